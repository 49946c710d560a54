package builder

// Shared set-up of the in-process build tests (*_inproc_test.go): a busybox
// base image made once from Debian's busybox-static, a fresh store and
// Builder per test (made as internal/cli makes them), builds of Dockerfiles
// written by the test, and readers of what a build produced (the rootfs,
// layer tars, progress events).

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/executor/runc"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/store"
)

// basePath is the PATH of the base image (and Docker's default).
const basePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// baseEpoch is the time of every entry of the base layer and of its history.
var baseEpoch = time.Unix(1577836800, 0).UTC() // 2020-01-01

// inprocBase is the busybox base image, made once per test binary.
var inprocBase struct {
	once  sync.Once
	skip  string // non-empty: the in-process build tests skip with it
	err   error  // the base could not be made
	blob  []byte // the gzip layer blob
	layer image.Layer
	cfg   v1.ConfigFile
}

// requireInproc skips t when builds cannot run here (not root, no runc, no
// busybox-static) and fails it when the base image could not be made.
func requireInproc(t testing.TB) {
	t.Helper()
	inprocBase.once.Do(makeInprocBase)
	if inprocBase.skip != "" {
		t.Skip(inprocBase.skip)
	}
	if inprocBase.err != nil {
		t.Fatalf("making the busybox base image: %v", inprocBase.err)
	}
}

func makeInprocBase() {
	b := &inprocBase
	switch {
	case os.Geteuid() != 0:
		b.skip = "in-process build tests need root (overlayfs mounts and runc); run the tests as root"
		return
	}
	if _, err := exec.LookPath("runc"); err != nil {
		b.skip = "in-process build tests need runc in PATH (apt-get install runc)"
		return
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		b.skip = "in-process build tests need /bin/busybox (apt-get install busybox-static)"
		return
	}
	dir, err := os.MkdirTemp("", "strata-inproc-base-")
	if err != nil {
		b.err = err
		return
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "rootfs")
	if err := busyboxRootfs(root); err != nil {
		b.err = err
		return
	}
	var buf bytes.Buffer
	epoch := baseEpoch
	blob, _, err := layer.Commit(context.Background(), root, &buf, layer.Gzip, layer.DiffOptions{Epoch: &epoch})
	if err != nil {
		b.err = err
		return
	}
	b.blob = buf.Bytes()
	b.layer = blob
	plat := platform.Host()
	b.cfg = v1.ConfigFile{OS: plat.OS, Architecture: plat.Architecture, Variant: plat.Variant, Created: v1.Time{Time: baseEpoch}}
	b.cfg.Config.Env = []string{basePath}
	b.cfg.Config.Cmd = []string{"sh"}
	b.cfg.History = []v1.History{{Created: v1.Time{Time: baseEpoch}, CreatedBy: "busybox base for in-process tests"}}
}

// busyboxRootfs makes the tree of the conformance kit's base image
// (/work/shared/conformance/make-bases.sh): busybox and its applet symlinks,
// passwd and group with root (0), nobody (65534) and app (1000), /tmp 1777,
// /root 0700, /home/app owned by app, empty /dev /proc /sys.
func busyboxRootfs(root string) error {
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "root", "home/app", "usr/local", "var"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		return err
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(list)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\napp:x:1000:\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(root, "home", "app"), 1000, 1000); err != nil {
		return err
	}
	return os.Chmod(filepath.Join(root, "root"), 0o700)
}

// inprocEnv is one test's store and Builder.
type inprocEnv struct {
	t    *testing.T
	root string // the store root
	s    *store.Store
	b    *Builder
	base *image.Image // busybox:latest in this store, nil for a bare store
}

// newInprocEnv opens a store in a temp dir holding busybox:latest and a
// Builder on it, as internal/cli opens them. When the test ends it checks
// that no mount and no runc container is left, and closes the session.
func newInprocEnv(t *testing.T) *inprocEnv {
	t.Helper()
	e := newBareInprocEnv(t)
	e.base = importBase(t, e.s, "busybox:latest")
	return e
}

// newBareInprocEnv is newInprocEnv without the base image in the store.
func newBareInprocEnv(t *testing.T) *inprocEnv {
	t.Helper()
	requireInproc(t)
	e := &inprocEnv{t: t, root: t.TempDir()}
	e.open(registry.Config{})
	return e
}

// open opens the store at e.root with a new session and a Builder using
// the registry config cfg.
func (e *inprocEnv) open(cfg registry.Config) {
	t := e.t
	t.Helper()
	s, err := store.Open(e.root)
	if err != nil {
		t.Fatal(err)
	}
	se, err := s.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	runner := &runc.Runner{StateDir: s.Path("runc"), BundleDir: filepath.Join(se.Dir, "bundles"), Deletes: &sync.WaitGroup{}}
	e.s = s
	e.b = &Builder{Store: s, Registry: registry.New(cfg), Runner: runner, Session: se}
	t.Cleanup(func() {
		runner.Deletes.Wait()
		if m := store.MountsUnder(e.root); len(m) > 0 {
			t.Errorf("mounts left under the store: %v", m)
		}
		if out, err := exec.Command("runc", "--root", s.Path("runc"), "list", "-q").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("runc containers left: %s", out)
		}
		if err := se.Close(); err != nil {
			t.Error(err)
		}
	})
}

// withRegistry gives e's Builder a registry client whose docker.io mirror
// is reg (an in-process registry's host:port).
func (e *inprocEnv) withRegistry(reg string) { e.withRegistries(reg) }

// withRegistries is withRegistry with more plain-http registries.
func (e *inprocEnv) withRegistries(reg string, more ...string) {
	hosts := map[string]registry.Host{"index.docker.io": {Mirrors: []string{"http://" + reg}}}
	for _, r := range append([]string{reg}, more...) {
		hosts[r] = registry.Host{Insecure: true}
	}
	e.b.Registry = registry.New(registry.Config{Registries: hosts})
}

// importBase writes the base image into s under name.
func importBase(t testing.TB, s *store.Store, name string) *image.Image {
	t.Helper()
	if _, _, err := s.WriteBlob(context.Background(), bytes.NewReader(inprocBase.blob), inprocBase.layer.Digest); err != nil {
		t.Fatal(err)
	}
	img, err := image.Write(s, inprocBase.cfg, []image.Layer{inprocBase.layer})
	if err != nil {
		t.Fatal(err)
	}
	if name != "" {
		if err := s.Tag(name, img.Descriptor); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// startRegistry starts an in-process registry on 127.0.0.1 holding the base
// image as library/busybox:latest and returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	requireInproc(t)
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	// Push the base with a throwaway store's view of it.
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img := importBase(t, s, "")
	vimg, err := img.V1(s)
	if err != nil {
		t.Fatal(err)
	}
	c := registry.New(registry.Config{Registries: map[string]registry.Host{host: {Insecure: true}}})
	if err := c.Push(context.Background(), host+"/library/busybox:latest", vimg); err != nil {
		t.Fatalf("push the base image: %v", err)
	}
	return host
}

// ctxFile is a file of a build context: its content and mode (0644 if 0).
type ctxFile struct {
	data string
	mode os.FileMode
}

// writeContext writes files (paths relative to dir; a path ending in "/"
// is a directory) into dir.
func writeContext(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		writeContextFile(t, dir, p, ctxFile{data: c})
	}
}

func writeContextFile(t testing.TB, dir, p string, f ctxFile) {
	t.Helper()
	full := filepath.Join(dir, p)
	if strings.HasSuffix(p, "/") {
		if err := os.MkdirAll(full, 0o755); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	mode := f.mode
	if mode == 0 {
		mode = 0o644
	}
	if err := os.WriteFile(full, []byte(f.data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(full, mode); err != nil {
		t.Fatal(err)
	}
}

// buildResult is one finished Build.
type buildResult struct {
	img    *image.Image
	err    error
	events []progress.Event
}

// log renders the recorded progress, for failure messages.
func (r buildResult) log() string {
	var b strings.Builder
	for _, ev := range r.events {
		switch ev.Type {
		case progress.EventStart:
			fmt.Fprintf(&b, "#%d %s\n", ev.Step, ev.Name)
		case progress.EventLog:
			fmt.Fprintf(&b, "#%d   %s\n", ev.Step, ev.Line)
		case progress.EventMessage:
			fmt.Fprintf(&b, "%s\n", ev.Line)
		default:
			fmt.Fprintf(&b, "#%d %s %s %s\n", ev.Step, strings.ToUpper(string(ev.Type)), ev.Error, ev.Reason)
		}
	}
	return b.String()
}

// steps returns the names of the steps that ended with event type typ.
func (r buildResult) steps(typ progress.EventType) []string {
	var out []string
	for _, ev := range r.events {
		if ev.Type == typ {
			out = append(out, ev.Name)
		}
	}
	return out
}

// messages returns the message lines (warnings, notes) of the build.
func (r buildResult) messages() []string {
	var out []string
	for _, ev := range r.events {
		if ev.Type == progress.EventMessage {
			out = append(out, ev.Line)
		}
	}
	return out
}

// cached reports whether a step whose name contains sub ended as a cache hit.
func (r buildResult) cached(sub string) bool {
	return r.ended(sub) == progress.EventCached
}

// ended returns how the step whose name contains sub ended ("" if no such step).
func (r buildResult) ended(sub string) progress.EventType {
	var got progress.EventType
	for _, ev := range r.events {
		if (ev.Type == progress.EventDone || ev.Type == progress.EventCached || ev.Type == progress.EventError) && strings.Contains(ev.Name, sub) {
			got = ev.Type
		}
	}
	return got
}

// build writes dockerfile into a new context dir with files and builds it.
func (e *inprocEnv) build(dockerfile string, files map[string]string, opts ...func(*Options)) buildResult {
	e.t.Helper()
	dir := e.t.TempDir()
	writeContext(e.t, dir, files)
	return e.buildDir(dir, dockerfile, opts...)
}

// buildDir builds dockerfile (written as dir/Dockerfile) with context dir.
func (e *inprocEnv) buildDir(dir, dockerfile string, opts ...func(*Options)) buildResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return e.buildCtx(ctx, dir, dockerfile, opts...)
}

// buildCtx is buildDir with the context ctx.
func (e *inprocEnv) buildCtx(ctx context.Context, dir, dockerfile string, opts ...func(*Options)) buildResult {
	e.t.Helper()
	df := filepath.Join(dir, "Dockerfile")
	if err := os.WriteFile(df, []byte(dockerfile), 0o644); err != nil {
		e.t.Fatal(err)
	}
	pr := progress.New(nil, true)
	pr.Record()
	o := Options{ContextDir: dir, DockerfilePath: df, Progress: pr}
	for _, f := range opts {
		f(&o)
	}
	img, err := e.b.Build(ctx, o)
	if m := store.MountsUnder(e.b.Session.Dir); len(m) > 0 {
		e.t.Errorf("mounts left in the session after the build: %v", m)
	}
	return buildResult{img: img, err: err, events: pr.Events()}
}

// mustBuild is build that fails the test when the build fails.
func (e *inprocEnv) mustBuild(dockerfile string, files map[string]string, opts ...func(*Options)) buildResult {
	e.t.Helper()
	r := e.build(dockerfile, files, opts...)
	if r.err != nil {
		e.t.Fatalf("build failed: %v\n%s", r.err, r.log())
	}
	return r
}

// rootfs exports the flattened filesystem of img and returns its directory.
func (e *inprocEnv) rootfs(img *image.Image) string {
	e.t.Helper()
	dest := filepath.Join(e.t.TempDir(), "rootfs")
	if err := e.b.ExportRootfs(context.Background(), img, dest); err != nil {
		e.t.Fatalf("export rootfs: %v", err)
	}
	return dest
}

// imageFile is what the tests check of a file: type and mode, owner, content
// (regular files) or target (symlinks).
type imageFile struct {
	mode     os.FileMode
	uid, gid int
	data     string
}

// statFile describes p (absolute in the image) under root; ok is false when
// it does not exist.
func statFile(t testing.TB, root, p string) (imageFile, bool) {
	t.Helper()
	full := filepath.Join(root, p)
	fi, err := os.Lstat(full)
	if errors.Is(err, os.ErrNotExist) {
		return imageFile{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	f := imageFile{mode: fi.Mode(), uid: int(st.Uid), gid: int(st.Gid)}
	switch {
	case fi.Mode().IsRegular():
		b, err := os.ReadFile(full)
		if err != nil {
			t.Fatal(err)
		}
		f.data = string(b)
	case fi.Mode()&os.ModeSymlink != 0:
		l, err := os.Readlink(full)
		if err != nil {
			t.Fatal(err)
		}
		f.data = l
	}
	return f, true
}

// wantFile checks p under root: its permission bits (and type: regular file
// unless typ says otherwise), owner and, when data is not "-", content.
func wantFile(t testing.TB, root, p string, typ os.FileMode, perm os.FileMode, uid, gid int, data string) {
	t.Helper()
	f, ok := statFile(t, root, p)
	if !ok {
		t.Errorf("%s: missing", p)
		return
	}
	if got := f.mode & (os.ModeType | os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky); got != typ|perm {
		t.Errorf("%s: mode %v, want %v", p, got, typ|perm)
	}
	if f.uid != uid || f.gid != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", p, f.uid, f.gid, uid, gid)
	}
	if data != "-" && f.data != data {
		t.Errorf("%s: content %q, want %q", p, f.data, data)
	}
}

// readText returns the content of p under root, "" (and an error) if missing.
func readText(t testing.TB, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Errorf("read %s: %v", p, err)
	}
	return string(b)
}

// layerEntry is an entry of a layer tar.
type layerEntry struct {
	hdr  *tar.Header
	data string
}

// layerEntries reads the layer blob l from e's store.
func (e *inprocEnv) layerEntries(l image.Layer) map[string]layerEntry {
	e.t.Helper()
	f, err := e.s.OpenBlob(l.Digest)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	return readLayer(e.t, f)
}

func readLayer(t testing.TB, r io.Reader) map[string]layerEntry {
	t.Helper()
	rc, err := layer.Decompress(r)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]layerEntry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = layerEntry{hdr: h, data: string(b)}
	}
}

// names lists the entry names of a layer, sorted.
func entryNames(entries map[string]layerEntry) []string {
	var out []string
	for n := range entries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// newHistory returns the history entries a build added to the base image's.
func newHistory(t testing.TB, img *image.Image) []v1.History {
	t.Helper()
	h := img.Config.History
	if len(h) < len(inprocBase.cfg.History) || h[0].CreatedBy != inprocBase.cfg.History[0].CreatedBy {
		t.Fatalf("history does not start with the base image's: %+v", h)
	}
	return h[len(inprocBase.cfg.History):]
}

// newLayers returns the layers a build added to the base image's.
func newLayers(t testing.TB, img *image.Image) []image.Layer {
	t.Helper()
	if len(img.Layers) == 0 || img.Layers[0].DiffID != inprocBase.layer.DiffID {
		t.Fatalf("the image does not start with the base layer: %+v", img.Layers)
	}
	return img.Layers[1:]
}

// inodeOf returns the inode number of p.
func inodeOf(t testing.TB, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// readBusybox returns the content of the busybox the base image holds.
func readBusybox() (string, error) {
	b, err := os.ReadFile("/bin/busybox")
	return string(b), err
}

// newHistoryScratch returns the created_by of every history entry of an
// image built FROM scratch.
func newHistoryScratch(img *image.Image) []string {
	var out []string
	for _, h := range img.Config.History {
		out = append(out, h.CreatedBy)
	}
	return out
}

// entries lists the records of the store's build cache.
func (e *inprocEnv) entries() []cache.Entry {
	e.t.Helper()
	ix, err := cache.Open(e.s.Path("cache"))
	if err != nil {
		e.t.Fatal(err)
	}
	es, err := ix.Entries()
	if err != nil {
		e.t.Fatal(err)
	}
	return es
}
