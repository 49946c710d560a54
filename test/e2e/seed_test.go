package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/strata-build/strata/test/internal/testenv"
) // seedBuild is the result of building examples/seed/Dockerfile once.
type seedBuild struct {
	store     string
	dockerTar string // --output type=docker
	ociTar    string // --output type=oci
}

// TestSeed builds the seed example (a golang build stage, the server alone on
// scratch) once in the shared store and checks the result with strata itself,
// skopeo, umoci and a real registry. The Dockerfile.index and
// Dockerfile.image variants build too.
func TestSeed(t *testing.T) {
	t.Parallel()
	store := sharedSeedStore(t)
	seedDir := filepath.Join(suite.RepoRoot, "examples", "seed")
	out := suite.TempDir(t)
	sb := seedBuild{store: store, dockerTar: filepath.Join(out, "seed.tar"), ociTar: filepath.Join(out, "seed.oci.tar")}

	r := suite.MustRun(t, store, runOpts{Timeout: seedTimeout}, "build", "-t", "seed",
		"--output", "type=docker,dest="+sb.dockerTar+",name=seed:latest",
		"--output", "type=oci,dest="+sb.ociTar,
		"-f", filepath.Join(seedDir, "Dockerfile"), seedDir)
	t.Logf("seed build took %s", r.Elapsed.Round(time.Second))

	t.Run("OneLayerOnlyServer", func(t *testing.T) {
		for _, a := range []struct {
			kind string
			img  testenv.Image
		}{
			{"oci", testenv.ReadOCIArchive(t, sb.ociTar)},
			{"docker", testenv.ReadDockerArchive(t, sb.dockerTar)},
		} {
			if len(a.img.Layers) != 1 {
				t.Errorf("%s archive: image has %d layers, want exactly 1 (the server)", a.kind, len(a.img.Layers))
				continue
			}
			es := a.img.Layers[0]
			if names := entryNames(es); len(es) != 1 || cleanName(es[0].Name) != "server" || strings.HasSuffix(es[0].Name, "/") {
				t.Errorf("%s archive: layer entries = %q, want only [\"server\"] (no directories, not even /)", a.kind, names)
			} else if es[0].Typeflag != '0' || es[0].Mode&0o111 == 0 || es[0].Size == 0 {
				t.Errorf("%s archive: server entry = %+v, want a non-empty executable regular file", a.kind, es[0])
			}
			if want := []string{"/server"}; !reflect.DeepEqual(a.img.Config.Config.Entrypoint, want) {
				t.Errorf("%s archive: Entrypoint = %q, want %q", a.kind, a.img.Config.Config.Entrypoint, want)
			}
			if n := len(a.img.Config.RootFS.DiffIDs); n != 1 {
				t.Errorf("%s archive: config has %d diff_ids, want 1", a.kind, n)
			}
		}
		if img := testenv.ReadDockerArchive(t, sb.dockerTar); img.Name != "seed:latest" {
			t.Errorf("docker archive RepoTags[0] = %q, want seed:latest (from name=)", img.Name)
		}
	})

	t.Run("RunVersion", func(t *testing.T) {
		r := strata(t, store, "run", "seed", "version")
		if !strings.HasPrefix(r.Stdout, "server 1.0.0") {
			t.Errorf("strata run seed version: stdout does not start with %q:\n%s", "server 1.0.0", r)
		}
		// The exit code of the container is passed through.
		r = strataRun(t, store, runOpts{}, "run", "busybox", "sh", "-c", "exit 3")
		if r.Code != 3 {
			t.Errorf("strata run busybox sh -c 'exit 3': exit code %d, want 3:\n%s", r.Code, r)
		}
		// images, inspect and history know the image.
		r = strata(t, store, "images")
		if _, ok := lineWith(r.Stdout, "seed", "latest"); !ok {
			t.Errorf("strata images does not list seed latest:\n%s", r)
		}
		r = strata(t, store, "inspect", "seed")
		var insp []struct {
			Config struct{ Entrypoint []string } // docker inspect's shape
		}
		if err := json.Unmarshal([]byte(r.Stdout), &insp); err != nil || len(insp) != 1 || !reflect.DeepEqual(insp[0].Config.Entrypoint, []string{"/server"}) {
			t.Errorf("strata inspect seed: want a JSON array with Config.Entrypoint [/server] (err %v):\n%s", err, r)
		}
		r = strata(t, store, "history", "seed")
		if !strings.Contains(r.Stdout, "COPY") || !strings.Contains(r.Stdout, "ENTRYPOINT") {
			t.Errorf("strata history seed: want the COPY and ENTRYPOINT steps:\n%s", r)
		}
	})

	t.Run("Skopeo", func(t *testing.T) {
		testenv.RequireTool(t, "skopeo")
		for _, ref := range []string{"docker-archive:" + sb.dockerTar, "oci-archive:" + sb.ociTar} {
			var info struct{ Layers []string }
			raw := runTool(t, time.Minute, "skopeo", "inspect", ref)
			if err := json.Unmarshal([]byte(raw), &info); err != nil {
				t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, raw)
			}
			if len(info.Layers) != 1 {
				t.Errorf("skopeo inspect %s: %d layers, want 1:\n%s", ref, len(info.Layers), raw)
			}
			var cfg v1.ConfigFile
			raw = runTool(t, time.Minute, "skopeo", "inspect", "--config", ref)
			if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatalf("skopeo inspect --config %s: %v\n%s", ref, err, raw)
			}
			if want := []string{"/server"}; !reflect.DeepEqual(cfg.Config.Entrypoint, want) {
				t.Errorf("skopeo inspect --config %s: Entrypoint = %q, want %q", ref, cfg.Config.Entrypoint, want)
			}
		}
	})

	t.Run("Umoci", func(t *testing.T) {
		testenv.RequireTool(t, "umoci")
		dir := suite.TempDir(t)
		layout := filepath.Join(dir, "layout")
		if err := os.Mkdir(layout, 0o755); err != nil {
			t.Fatal(err)
		}
		runTool(t, time.Minute, "tar", "-xf", sb.ociTar, "-C", layout)
		tag := testenv.ReadOCIArchive(t, sb.ociTar).Name
		if tag == "" {
			t.Fatalf("the OCI archive's index.json names no image (org.opencontainers.image.ref.name), umoci cannot address it")
		}
		bundle := filepath.Join(dir, "bundle")
		runTool(t, 2*time.Minute, "umoci", "unpack", "--image", layout+":"+tag, bundle)
		fi, err := os.Stat(filepath.Join(bundle, "rootfs", "server"))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			t.Errorf("umoci unpack: rootfs/server is not an executable file: %v", err)
		}
		ents, _ := os.ReadDir(filepath.Join(bundle, "rootfs"))
		if len(ents) != 1 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("umoci unpack: rootfs holds %q, want only server", names)
		}
	})

	t.Run("Registry", func(t *testing.T) { testSeedRegistry(t, sb) })

	t.Run("IndexVariant", func(t *testing.T) {
		oci := filepath.Join(suite.TempDir(t), "index.oci.tar")
		suite.MustRun(t, store, runOpts{Timeout: seedTimeout}, "build", "-t", "seed-index", "--output", "type=oci,dest="+oci,
			"-f", filepath.Join(seedDir, "Dockerfile.index"), seedDir)
		img := testenv.ReadOCIArchive(t, oci)
		if len(img.Layers) != 1 || len(img.Layers[0]) != 1 || cleanName(img.Layers[0][0].Name) != "server" {
			var all [][]string
			for _, l := range img.Layers {
				all = append(all, entryNames(l))
			}
			t.Errorf("Dockerfile.index: layers = %q, want one layer holding only server", all)
		}
		r := strata(t, store, "run", "seed-index", "version")
		if !strings.HasPrefix(r.Stdout, "server 1.0.0") {
			t.Errorf("Dockerfile.index image: version output wrong:\n%s", r)
		}
	})

	t.Run("ImageVariant", func(t *testing.T) {
		oci := filepath.Join(suite.TempDir(t), "image.oci.tar")
		suite.MustRun(t, store, runOpts{Timeout: seedTimeout}, "build", "-t", "seed-image", "--output", "type=oci,dest="+oci,
			"-f", filepath.Join(seedDir, "Dockerfile.image"), seedDir)
		img := testenv.ReadOCIArchive(t, oci)
		files := map[string]bool{}
		for _, l := range img.Layers {
			for _, e := range l {
				files[cleanName(e.Name)] = true
			}
		}
		if !files["bin/busybox"] || !files["server"] {
			t.Errorf("Dockerfile.image: want bin/busybox and server in the layers, got %v", img.Layers)
		}
		r := strata(t, store, "run", "--entrypoint", "/bin/busybox", "seed-image", "ls", "/bin/busybox", "/server")
		if !strings.Contains(r.Stdout, "/bin/busybox") || !strings.Contains(r.Stdout, "/server") {
			t.Errorf("Dockerfile.image: ls /bin/busybox /server in the image:\n%s", r)
		}
		r = strata(t, store, "run", "seed-image", "version")
		if !strings.HasPrefix(r.Stdout, "server 1.0.0") {
			t.Errorf("Dockerfile.image image: version output wrong:\n%s", r)
		}
	})
}

// testSeedRegistry pushes the seed image to Debian's docker-registry, checks
// it with skopeo, builds FROM it in a fresh store, and pulls busybox through
// a docker.io mirror.
func testSeedRegistry(t *testing.T, sb seedBuild) {
	reg := startRegistry(t)
	ref := reg.Addr + "/seed:1"

	// Plain http to 127.0.0.1 must work without any registry config
	// (strata runs with STRATA_CONFIG pointing at a missing file).
	r := strataRun(t, sb.store, runOpts{Timeout: 2 * time.Minute}, "push", "seed", ref)
	if r.Code != 0 {
		cfg := filepath.Join(suite.TempDir(t), "config.json")
		os.WriteFile(cfg, []byte(`{"registries":{"`+reg.Addr+`":{"insecure":true}}}`), 0o644)
		r2 := strataRun(t, sb.store, runOpts{Timeout: 2 * time.Minute}, "--config", cfg, "push", "seed", ref)
		t.Fatalf("push to plain-http 127.0.0.1 without a config failed:\n%s\nwith {\"insecure\":true} config: exit %d\n%s", r, r2.Code, r2)
	}
	m := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Errorf("strata push: stdout should name the pushed digest:\n%s", r)
	}

	if _, err := exec.LookPath("skopeo"); err == nil {
		raw := runTool(t, time.Minute, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref)
		var info struct {
			Digest string
			Layers []string
		}
		if err := json.Unmarshal([]byte(raw), &info); err != nil {
			t.Fatalf("skopeo inspect docker://%s: %v\n%s", ref, err, raw)
		}
		if m != nil && info.Digest != m[1] {
			t.Errorf("skopeo sees digest %s, strata push reported %s", info.Digest, m[1])
		}
		if len(info.Layers) != 1 {
			t.Errorf("skopeo inspect docker://%s: %d layers, want 1", ref, len(info.Layers))
		}
	} else {
		t.Log("skopeo missing: not inspecting the pushed image")
	}

	t.Run("FromPushedImage", func(t *testing.T) {
		store := suite.NewStore(t)
		ctx := suite.WriteFiles(t, map[string]string{
			"Dockerfile": "FROM " + ref + "\nCOPY x /x\n",
			"x":          "payload\n",
		})
		strata(t, store, "build", "-t", "onseed", ctx)
		r := strata(t, store, "run", "onseed", "version")
		if !strings.HasPrefix(r.Stdout, "server 1.0.0") {
			t.Errorf("image built FROM %s: version output wrong:\n%s", ref, r)
		}
		if !strings.Contains(reg.Log(), "GET /v2/seed/manifests/1") {
			t.Errorf("the registry never served the manifest of seed:1; registry log:\n%s", reg.Log())
		}
	})

	t.Run("DockerHubMirror", func(t *testing.T) {
		strata(t, sb.store, "push", "busybox", reg.Addr+"/library/busybox:latest")
		store := suite.NewStore(t) // empty: busybox can only come from the mirror
		ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo mirrored > /m\n"})
		mirror := runOpts{Env: []string{"STRATA_REGISTRY_MIRRORS=docker.io=http://" + reg.Addr}}
		suite.MustRun(t, store, mirror, "build", "-t", "viamirror", ctx)
		if !strings.Contains(reg.Log(), "GET /v2/library/busybox/manifests/latest") {
			t.Errorf("FROM busybox with a docker.io mirror: the mirror never served library/busybox:latest; registry log:\n%s", reg.Log())
		}
		r := strata(t, store, "run", "viamirror", "cat", "/m")
		if strings.TrimSpace(r.Stdout) != "mirrored" {
			t.Errorf("image built from the mirrored busybox: cat /m wrong:\n%s", r)
		}
	})
}
