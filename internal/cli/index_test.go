package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/store"
)

// TestImageIndexInStore: a name that points at an image index (a
// multi-platform image) is listed with the index's digest as its ID,
// inspected as its host image, and removed by rmi.
func TestImageIndexInStore(t *testing.T) {
	root, _ := importedStore(t)
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	im, ok, err := s.Lookup("small:1")
	if err != nil || !ok {
		t.Fatalf("small:1: %v %v", ok, err)
	}
	host, err := image.Load(s, im.Descriptor.Digest)
	if err != nil {
		t.Fatal(err)
	}
	// The same image "for" another architecture: a copy of its config.
	other := "arm64"
	if platform.Host().Architecture == "arm64" {
		other = "amd64"
	}
	cfg := host.Config
	cfg.Architecture = other
	foreign, err := image.Write(s, cfg, host.Layers)
	if err != nil {
		t.Fatal(err)
	}
	var descs []v1.Descriptor
	for _, img := range []*image.Image{host, foreign} {
		d, _ := v1.NewHash(img.Descriptor.Digest.String())
		descs = append(descs, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: d, Size: img.Descriptor.Size,
			Platform: &v1.Platform{OS: "linux", Architecture: img.Config.Architecture}})
	}
	b, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: descs})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := s.PutBlob(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("multi:1", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: idx, Size: int64(len(b))}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	r := mustStrata(t, root, "images")
	if !strings.Contains(r.stdout, idx.Encoded()[:12]) || strings.Contains(r.stderr, "warning") {
		t.Errorf("strata images does not list the index by its digest %s:\n%s\n%s", idx.Encoded()[:12], r.stdout, r.stderr)
	}
	r = mustStrata(t, root, "inspect", "multi:1")
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out) != 1 || out[0]["Architecture"] != platform.Host().Architecture {
		t.Errorf("strata inspect multi:1 is not the host's image (%v):\n%s", err, r.stdout)
	}
	mustStrata(t, root, "rmi", "multi:1")
	if r := strataIn(t, root, "inspect", "multi:1"); r.code == 0 {
		t.Errorf("multi:1 still there after rmi:\n%s", r.stdout)
	}
	r = mustStrata(t, root, "fsck")
	if !strings.Contains(r.stdout, ": 0 problems") {
		t.Errorf("fsck after rmi of an index:\n%s%s", r.stdout, r.stderr)
	}
}

// TestImportPlatform: import --platform says the image's platform;
// a platform that does not parse is a usage error.
func TestImportPlatform(t *testing.T) {
	root, dir := t.TempDir(), t.TempDir()
	mustStrata(t, root, "import", "--platform", "linux/arm64/v8", dir, "arm:1")
	r := mustStrata(t, root, "inspect", "arm:1")
	if !strings.Contains(r.stdout, `"Architecture": "arm64"`) || strings.Contains(r.stdout, `"Variant": "v8"`) {
		t.Errorf("import --platform linux/arm64/v8: inspect says\n%s", r.stdout)
	}
	if r := strataIn(t, root, "import", "--platform", "linux/", dir, "bad:1"); r.code != 2 || !strings.Contains(r.stderr, "--platform=linux/") {
		t.Errorf("import --platform linux/: exit %d\n%s", r.code, r.stderr)
	}
}

// TestBuildSeveralPlatforms: --platform with a list keeps an image index
// of one image per platform under the tag; type=oci writes the index,
// type=local a folder per platform, --push the images and the index; what
// cannot hold an index (type=docker, --load) is refused before anything is
// built.
func TestBuildSeveralPlatforms(t *testing.T) {
	root, ctx := t.TempDir(), t.TempDir()
	df := "FROM scratch\nARG TARGETARCH\nCOPY f /f-$TARGETARCH\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"-o", "type=docker,dest=" + filepath.Join(root, "x.tar")}, {"--load"}} {
		args := append([]string{"build", "--platform", "linux/amd64,linux/arm64"}, bad...)
		if r := strataIn(t, root, append(args, ctx)...); r.code != 2 || !strings.Contains(r.stderr, "several platforms") {
			t.Errorf("strata %v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	mustStrata(t, root, "build", "-q", "--platform", "linux/arm64,linux/amd64", "-t", "multi:1", ctx)
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	im, ok, err := s.Lookup("multi:1")
	if err != nil || !ok || im.Descriptor.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("multi:1 = %+v, %v, %v; want an image index", im, ok, err)
	}
	for _, arch := range []string{"arm64", "amd64"} {
		img, err := image.LoadFor(s, im.Descriptor, v1.Platform{OS: "linux", Architecture: arch})
		if err != nil || img.Config.Architecture != arch || len(img.Layers) != 1 {
			t.Errorf("multi:1 for %s: %+v, %v", arch, img, err)
		}
	}
}

// multiContext writes a context whose image has /f-ARCH for its target.
func multiContext(t *testing.T) string {
	t.Helper()
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\nARG TARGETARCH\nCOPY f /f-$TARGETARCH\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func TestIndexOutputs(t *testing.T) {
	root, ctx, out := t.TempDir(), multiContext(t), t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	archive, local := filepath.Join(out, "multi.tar"), filepath.Join(out, "local")
	meta, rep, iid := filepath.Join(out, "meta.json"), filepath.Join(out, "report.html"), filepath.Join(out, "iid")
	mustStrata(t, root, "build", "--platform", "linux/amd64,linux/arm64", "-t", "multi:1", "--metadata-file", meta, "--report", rep, "--iidfile", iid,
		"-o", "type=oci,dest="+archive, "-o", "type=local,dest="+local, ctx)
	id, err := os.ReadFile(iid)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	if b, err := os.ReadFile(meta); err != nil || json.Unmarshal(b, &md) != nil || md["containerimage.digest"] != string(id) || md["containerimage.config.digest"] != nil {
		t.Errorf("--metadata-file of an index build: %v (iidfile %s)", md, id)
	}
	if b, err := os.ReadFile(rep); err != nil || !strings.Contains(string(b), "[linux/arm64 stage-0 2/2] COPY") {
		t.Errorf("--report of an index build lacks the arm64 steps: %v", err)
	}
	for _, f := range []string{"linux_amd64/f-amd64", "linux_arm64/f-arm64"} {
		if _, err := os.Stat(filepath.Join(local, f)); err != nil {
			t.Errorf("type=local: %v", err)
		}
	}
	checkTwoPlatforms(t, archiveIndex(t, archive, "1"))
}

// archiveIndex returns the image index an OCI archive's index.json names,
// which must be its one entry, named ref.
func archiveIndex(t *testing.T, archive, ref string) v1.ImageIndex {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("tar", "-xf", archive, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("untar: %v %s", err, b)
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil || len(tm.Manifests) != 1 || tm.Manifests[0].MediaType != types.OCIImageIndex || tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != ref {
		t.Fatalf("index.json = %+v, %v; want one image index named %s", tm, err, ref)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// checkTwoPlatforms checks idx holds an amd64 and an arm64 image, each
// complete (its layers readable) with /f-ARCH.
func checkTwoPlatforms(t *testing.T, idx v1.ImageIndex) {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 2 {
		t.Fatalf("index: %+v, %v", im, err)
	}
	for i, arch := range []string{"amd64", "arm64"} {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.Architecture != arch {
			t.Errorf("manifest %d: platform %+v, want %s", i, d.Platform, arch)
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		ls, err := img.Layers()
		if err != nil || len(ls) != 1 {
			t.Fatalf("%s: layers %v, %v", arch, ls, err)
		}
		rc, err := ls[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !strings.Contains(string(b), "f-"+arch) {
			t.Errorf("%s: the layer does not hold f-%s", arch, arch)
		}
	}
}

// TestPushIndex: --push of several platforms puts the images by digest,
// then the index under the tag.
func TestPushIndex(t *testing.T) {
	host, _, run := registryEnv(t)
	ref := host + "/multi:1"
	mustRun(t, run("build", "--platform", "linux/amd64,linux/arm64", "--push", "-t", ref, multiContext(t)))
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("the registry has no index at %s: %v", ref, err)
	}
	checkTwoPlatforms(t, idx)
}

// TestIndexCommands: inspect/history --platform take the platform's image
// of an index (the host's by default), tag keeps the index, save --format
// oci and push write the whole index, save as a docker archive the host's
// image.
func TestIndexCommands(t *testing.T) {
	host, root, runCLI := registryEnv(t)
	ctx, out := multiContext(t), t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		return mustRun(t, runCLI(args...))
	}
	run("build", "-q", "--platform", "linux/amd64,linux/arm64", "-t", "multi:1", ctx)
	for plat, want := range map[string]string{"": platform.Host().Architecture, "linux/arm64": "arm64", "linux/amd64": "amd64"} {
		args := []string{"inspect", "--format", "{{.Architecture}}", "multi:1"}
		if plat != "" {
			args = append(args, "--platform", plat)
		}
		if got := strings.TrimSpace(run(args...)); got != want {
			t.Errorf("inspect --platform=%q: %s, want %s", plat, got, want)
		}
	}
	if r := strataIn(t, root, "inspect", "--platform", "linux/s390x", "multi:1"); r.code == 0 || !strings.Contains(r.stderr, "no linux/s390x image") {
		t.Errorf("inspect --platform linux/s390x: exit %d\n%s", r.code, r.stderr)
	}
	run("tag", "multi:1", "again:1")
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	im, ok, err := s.Lookup("again:1")
	s.Close()
	if err != nil || !ok || im.Descriptor.MediaType != ocispec.MediaTypeImageIndex {
		t.Errorf("tag of an index: again:1 = %+v", im.Descriptor)
	}
	archive := filepath.Join(out, "oci.tar")
	run("save", "--format", "oci", "-o", archive, "multi:1")
	checkTwoPlatforms(t, archiveIndex(t, archive, "1"))
	run("save", "-o", filepath.Join(out, "docker.tar"), "multi:1") // the host's image
	run("push", "multi:1", host+"/pushed:1")
	r, err := name.ParseReference(host+"/pushed:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	ridx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("strata push of an index: %v", err)
	}
	checkTwoPlatforms(t, ridx)
}

// TestManifestCommand: manifest create joins images of one platform each
// (from the store, or pulled by digest from a registry) into an index in
// their order; two images of one platform are refused; inspect prints it;
// manifest push puts it in a registry.
func TestManifestCommand(t *testing.T) {
	host, root, run := registryEnv(t)
	ctx := multiContext(t)
	must := func(args ...string) string {
		t.Helper()
		return mustRun(t, run(args...))
	}
	must("build", "-q", "--platform", "linux/amd64", "-t", "app:amd64", ctx)
	must("build", "-q", "--platform", "linux/arm64", "-t", "app:arm64", ctx)
	// the arm64 image goes through the registry, pushed by digest and
	// gone from the store
	pushed := strings.TrimSpace(must("push", "app:arm64", host+"/app:arm64"))
	dg := pushed[strings.LastIndex(pushed, " ")+1:]
	must("rmi", "app:arm64")
	must("manifest", "create", "-t", "app:1", "app:amd64", host+"/app@"+dg)
	checkTwoPlatforms(t, storeIndex(t, root, "app:1"))

	if r := run("manifest", "create", "-t", "dup:1", "app:amd64", "app:amd64"); r.code == 0 || !strings.Contains(r.stderr, "are both linux/amd64 images") {
		t.Errorf("manifest create of one platform twice: exit %d\n%s", r.code, r.stderr)
	}
	out := must("manifest", "inspect", "app:1")
	if !strings.Contains(out, `"mediaType": "application/vnd.oci.image.index.v1+json"`) || !strings.Contains(out, `"architecture": "arm64"`) {
		t.Errorf("manifest inspect app:1:\n%s", out)
	}
	must("manifest", "push", "app:1", host+"/app:1")
	r, err := name.ParseReference(host+"/app:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	checkTwoPlatforms(t, idx)
	if out := must("manifest", "inspect", host+"/app:1"); !strings.Contains(out, `"architecture": "amd64"`) {
		t.Errorf("manifest inspect of the registry's index:\n%s", out)
	}
	// pull --platform takes that platform's image; the name stays the index's.
	must("rmi", "app:1")
	must("pull", "--platform", "linux/arm64", host+"/app:1")
	if got := strings.TrimSpace(must("inspect", "--platform", "linux/arm64", "--format", "{{.Architecture}}", host+"/app:1")); got != "arm64" {
		t.Errorf("pull --platform linux/arm64, then inspect: %s", got)
	}
}

// storeIndex returns the image index ref names in the store at root, as
// a go-containerregistry index (through an OCI archive, as a user sees it).
func storeIndex(t *testing.T, root, ref string) v1.ImageIndex {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "x.tar")
	mustStrata(t, root, "save", "--format", "oci", "-o", archive, ref)
	_, tag, _ := strings.Cut(ref, ":")
	return archiveIndex(t, archive, tag)
}

// registryEnv starts an in-process registry and returns its host, a store
// root whose config marks it plain http, and a runner of strata with both.
func registryEnv(t *testing.T) (host, root string, run func(args ...string) cliRun) {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	root = t.TempDir()
	cfg := filepath.Join(root, "config.json")
	if err := os.WriteFile(cfg, []byte(`{"registries":{"`+host+`":{"insecure":true}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run = func(args ...string) cliRun {
		t.Helper()
		var o, e bytes.Buffer
		code := Main(context.Background(), append([]string{"--root", root, "--config", cfg}, args...), strings.NewReader(""), &o, &e)
		return cliRun{code, o.String(), e.String()}
	}
	return host, root, run
}

// mustRun fails t unless r exited 0, and returns its stdout.
func mustRun(t *testing.T, r cliRun) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	return r.stdout
}
