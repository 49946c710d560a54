package multiplatform

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/strata-build/strata/test/internal/testenv"
)

const epoch = "SOURCE_DATE_EPOCH=1577836800"

// TestCrossCompiledSeed: examples/seed compiles on the build platform for
// each target: one index of an amd64 and an arm64 image, whose servers are
// x86-64 and aarch64 programs (the arm64 one runs under qemu-aarch64); no
// step was emulated; skopeo reads both platforms from the archive.
func TestCrossCompiledSeed(t *testing.T) {
	suite.RequireBuild(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain for the golang base image")
	}
	seed := filepath.Join(suite.TempDir(t), "seed")
	if err := os.CopyFS(seed, os.DirFS(filepath.Join(suite.RepoRoot, "examples", "seed"))); err != nil {
		t.Fatal(err)
	}
	dir := suite.TempDir(t)
	store := filepath.Join(dir, "store")
	cmd := exec.Command(filepath.Join(suite.RepoRoot, "scripts", "make-bases.sh"), suite.Bin)
	cmd.Env = append(os.Environ(), "STRATA_ROOT="+store, "TMPDIR="+dir, epoch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make-bases.sh: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "seed.tar")
	r := suite.MustRun(t, store, testenv.RunOpts{Env: []string{epoch}, Timeout: 5 * time.Minute},
		"build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", "seed", "-o", "type=oci,dest="+archive, seed)
	for _, plat := range []string{"linux/amd64", "linux/arm64"} {
		if !strings.Contains(r.Stderr, "["+plat+" builder 4/4] RUN CGO_ENABLED=0") {
			t.Errorf("no compile step for %s:\n%s", plat, r)
		}
	}
	if strings.Contains(r.Stderr, "emulated") {
		t.Errorf("a step of the cross-compiling seed was emulated:\n%s", r.Stderr)
	}
	idx := archiveIndex(t, archive)
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, arch := range []string{"amd64", "arm64"} {
		server := imageFile(t, platformImage(t, idx, arch), "server")
		f, err := elf.NewFile(bytes.NewReader(server))
		if err != nil || f.Machine != machines[arch] {
			t.Errorf("%s: /server is not a %v program: %v %v", arch, machines[arch], f, err)
			continue
		}
		if arch == "arm64" {
			qemu := testenv.RequireTool(t, "qemu-aarch64-static")
			p := filepath.Join(suite.TempDir(t), "server-arm64")
			if err := os.WriteFile(p, server, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(qemu, p, "version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "linux/arm64") {
				t.Errorf("the arm64 server under qemu-aarch64: %v\n%s", err, out)
			}
		}
	}
	if _, err := exec.LookPath("skopeo"); err == nil {
		out, err := exec.Command("skopeo", "inspect", "--raw", "oci-archive:"+archive).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"architecture":"arm64"`) || !strings.Contains(string(out), `"architecture":"amd64"`) {
			t.Errorf("skopeo inspect --raw of the archive: %v\n%s", err, out)
		}
	}
}

// archiveIndex returns the image index named by the OCI archive's
// index.json (its one entry).
func archiveIndex(t *testing.T, archive string) v1.ImageIndex {
	t.Helper()
	dir := filepath.Join(suite.TempDir(t), "layout")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", archive, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("untar %s: %v %s", archive, err, out)
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("%s: index.json %+v, %v", archive, m, err)
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// platformImage returns idx's image for linux/arch, failing unless the
// index holds exactly amd64 and arm64, in that order.
func platformImage(t *testing.T, idx v1.ImageIndex, arch string) v1.Image {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range m.Manifests {
		if d.Platform != nil {
			got = append(got, d.Platform.OS+"/"+d.Platform.Architecture)
		}
	}
	if strings.Join(got, ",") != "linux/amd64,linux/arm64" {
		t.Fatalf("index platforms %v, want linux/amd64,linux/arm64", got)
	}
	for _, d := range m.Manifests {
		if d.Platform.Architecture == arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	return nil
}

// imageFile returns the content of the file at path (no leading slash) in
// img's layers, the top one winning.
func imageFile(t *testing.T, img v1.Image, path string) []byte {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var found []byte
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimPrefix(h.Name, "./") == path {
				if found, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
		}
		rc.Close()
	}
	if found == nil {
		t.Fatalf("no /%s in the image", path)
	}
	return found
}

// TestRunOnTarget: a busybox index of the host's and Debian's arm64
// busybox on Debian's docker-registry; a Dockerfile whose RUN must execute
// on the target gives x86_64 and aarch64 (the arm64 RUN under QEMU, which
// the log says); the pushed index reads as both platforms with skopeo, its
// arm64 image unpacks with umoci, and strata run --platform linux/arm64
// runs the arm64 image.
func TestRunOnTarget(t *testing.T) {
	suite.RequireBuild(t)
	if _, err := os.Stat(testenv.ARM64Busybox()); err != nil {
		t.Skipf("no arm64 busybox (scripts/install-deps.sh fetches it): %v", err)
	}
	testenv.RequireQEMU(t, "aarch64", "arm64")
	reg := testenv.StartDockerRegistry(t, testenv.RequireTool(t, "docker-registry"), suite.TempDir(t), false)

	bases := suite.NewStore(t)
	for arch, bb := range map[string]string{"amd64": "/bin/busybox", "arm64": testenv.ARM64Busybox()} {
		root := filepath.Join(suite.TempDir(t), arch)
		if err := testenv.MakeBasesRoot(root, "/bin/busybox"); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(bb)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"import", "--platform", "linux/" + arch}, testenv.ImportArgs(root, "busybox:"+arch, testenv.ImagePATH)[1:]...)
		suite.MustRun(t, bases, testenv.RunOpts{Env: []string{epoch}}, args...)
	}
	suite.MustRun(t, bases, testenv.RunOpts{}, "manifest", "create", "--push", "-t", reg.Addr+"/library/busybox:latest", "busybox:amd64", "busybox:arm64")

	store := suite.NewStore(t)
	mirror := "STRATA_REGISTRY_MIRRORS=docker.io=http://" + reg.Addr
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN uname -m > /arch\n"})
	out := filepath.Join(suite.TempDir(t), "out")
	ref := reg.Addr + "/arch:1"
	r := suite.MustRun(t, store, testenv.RunOpts{Env: []string{mirror}, Timeout: 3 * time.Minute},
		"build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push", "-o", "type=local,dest="+out, ctx)
	for arch, want := range map[string]string{"linux_amd64": "x86_64\n", "linux_arm64": "aarch64\n"} {
		if b, err := os.ReadFile(filepath.Join(out, arch, "arch")); err != nil || string(b) != want {
			t.Errorf("%s/arch = %q, %v; want %q", arch, b, err, want)
		}
	}
	if !strings.Contains(r.Stderr, "emulated: linux/arm64 through qemu-aarch64") || strings.Contains(r.Stderr, "emulated: linux/amd64") {
		t.Errorf("the build log does not say (only) the arm64 RUN was emulated:\n%s", r.Stderr)
	}

	rr, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(rr)
	if err != nil {
		t.Fatalf("the pushed index: %v", err)
	}
	if got := string(imageFile(t, platformImage(t, idx, "arm64"), "arch")); got != "aarch64\n" {
		t.Errorf("the registry's arm64 image has /arch %q", got)
	}
	if _, err := exec.LookPath("skopeo"); err == nil {
		raw, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "--raw", "docker://"+ref).CombinedOutput()
		if err != nil || !strings.Contains(string(raw), `"architecture":"arm64"`) || !strings.Contains(string(raw), `"architecture":"amd64"`) {
			t.Errorf("skopeo inspect --raw docker://%s: %v\n%s", ref, err, raw)
		}
		if _, err := exec.LookPath("umoci"); err == nil {
			layoutDir := filepath.Join(suite.TempDir(t), "oci")
			if out, err := exec.Command("skopeo", "copy", "--src-tls-verify=false", "--override-arch", "arm64", "docker://"+ref, "oci:"+layoutDir+":arm64").CombinedOutput(); err != nil {
				t.Fatalf("skopeo copy of the arm64 image: %v\n%s", err, out)
			}
			bundle := filepath.Join(suite.TempDir(t), "bundle")
			if out, err := exec.Command("umoci", "unpack", "--image", layoutDir+":arm64", bundle).CombinedOutput(); err != nil {
				t.Errorf("umoci unpack of the arm64 image: %v\n%s", err, out)
			} else if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "arch")); err != nil || string(b) != "aarch64\n" {
				t.Errorf("umoci's rootfs /arch = %q, %v", b, err)
			}
		}
	}
	run := suite.MustRun(t, store, testenv.RunOpts{}, "run", "--platform", "linux/arm64", ref, "uname", "-m")
	if strings.TrimSpace(run.Stdout) != "aarch64" {
		t.Errorf("strata run --platform linux/arm64: %q", run.Stdout)
	}
}
