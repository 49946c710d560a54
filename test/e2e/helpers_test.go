package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/store"
	"github.com/strata-build/strata/test/internal/testenv"
)

// Set up once by TestMain.
var (
	skipReason  string // non-empty: every test skips with it
	repoRoot    string // the strata module root
	workDir     string // everything the suite writes lives below it
	strataBin   string // the strata binary built for this run
	noConfig    string // a --config path that does not exist: no registry config
	busyboxRoot string // a busybox rootfs directory, to import into fresh stores
	seedStore   string // shared store with busybox:latest and golang:1.26 (scripts/make-bases.sh)
	seedSetup   error  // why seedStore could not be made
)

const (
	defaultTimeout = 3 * time.Minute
	seedTimeout    = 6 * time.Minute // a golang build under load
	imagePATH      = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	switch {
	case os.Geteuid() != 0:
		skipReason = "e2e tests need root (overlayfs mounts and runc); run as root"
	default:
		if _, err := exec.LookPath("runc"); err != nil {
			skipReason = "e2e tests need runc in PATH (apt-get install runc)"
		}
	}
	if skipReason != "" {
		fmt.Fprintln(os.Stderr, "e2e: skipping all tests:", skipReason)
		return m.Run()
	}
	var err error
	if repoRoot, err = filepath.Abs("../.."); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "cmd", "strata")); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cannot find the strata module root:", err)
		return 1
	}
	if workDir, err = os.MkdirTemp("", "strata-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer removeAllChecked(workDir)
	strataBin = filepath.Join(workDir, "strata")
	noConfig = filepath.Join(workDir, "no-such-config.json")
	build := exec.Command("go", "build", "-o", strataBin, "./cmd/strata")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/strata: %v\n%s", err, out)
		return 1
	}
	if busyboxRoot, err = testenv.BusyboxRoot(filepath.Join(workDir, "busybox-rootfs")); err != nil {
		skipReason = "cannot make a busybox rootfs: " + err.Error()
		fmt.Fprintln(os.Stderr, "e2e: skipping all tests:", skipReason)
		return m.Run()
	}
	// The shared store for the seed tests: importing golang takes a while, do it once.
	seedStore = filepath.Join(workDir, "seed-store")
	mb := exec.Command(filepath.Join(repoRoot, "scripts", "make-bases.sh"), strataBin)
	mb.Dir = repoRoot
	mb.Env = append(strataEnv(nil), "STRATA_ROOT="+seedStore)
	if out, err := mb.CombinedOutput(); err != nil {
		seedSetup = fmt.Errorf("scripts/make-bases.sh: %v\n%s", err, out)
	}
	code := m.Run()
	if err := releaseStore(seedStore); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: shared seed store was not clean:", err)
		code = 1
	}
	return code
}

// requireEnv skips t when the suite cannot run here.
func requireEnv(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// requireTool skips t when a third-party tool is missing.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed: %v", name, err)
	}
	return p
}

// sharedSeedStore returns the shared store holding busybox:latest and golang:1.26.
func sharedSeedStore(t *testing.T) string {
	t.Helper()
	requireEnv(t)
	if seedSetup != nil {
		t.Fatalf("the shared store with the golang base could not be made: %v", seedSetup)
	}
	return seedStore
}

// strataEnv is the environment strata runs with: ours without STRATA_*
// settings (no mirrors, no config file) plus extra. STRATA_SNAPSHOTTER is
// kept, so that the suite can run on either snapshotter.
func strataEnv(extra []string) []string {
	var env []string
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "STRATA_") && !strings.HasPrefix(e, "STRATA_SNAPSHOTTER=") {
			continue
		}
		env = append(env, e)
	}
	env = append(env, "STRATA_CONFIG="+noConfig)
	return append(env, extra...)
}

// result is one finished strata invocation.
type result struct {
	args           []string
	stdout, stderr string
	code           int
	elapsed        time.Duration
	err            error // set when strata could not be run or timed out
}

func (r result) String() string {
	return fmt.Sprintf("strata %s\n  exit code: %d (after %s)%s\n  --- stdout ---\n%s\n  --- stderr ---\n%s",
		strings.Join(r.args, " "), r.code, r.elapsed.Round(time.Millisecond), errSuffix(r.err), indent(r.stdout), indent(r.stderr))
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return "\n  error: " + err.Error()
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (empty)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// runOpts tunes one strata invocation.
type runOpts struct {
	env     []string // extra environment
	dir     string   // working directory (default: workDir)
	timeout time.Duration
	stdin   io.Reader
}

// strataCmd prepares `strata --root store args...`. A context timeout stops
// strata with SIGTERM first (so that it can release its mounts), SIGKILL later.
func strataCmd(ctx context.Context, store string, o runOpts, args ...string) *exec.Cmd {
	full := append([]string{"--root", store}, args...)
	cmd := exec.CommandContext(ctx, strataBin, full...)
	cmd.Env = strataEnv(o.env)
	cmd.Dir = o.dir
	if cmd.Dir == "" {
		cmd.Dir = workDir
	}
	cmd.Stdin = o.stdin
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	return cmd
}

// strataRun runs strata in store and returns what happened, whatever it was.
func strataRun(t *testing.T, store string, o runOpts, args ...string) result {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = defaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := strataCmd(ctx, store, o, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{args: cmd.Args[1:], stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start), code: -1}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.err = err
	}
	if ctx.Err() != nil {
		r.err = fmt.Errorf("timed out after %s", o.timeout)
	}
	return r
}

// strata runs strata and fails the test unless it exits 0.
func strata(t *testing.T, store string, args ...string) result {
	t.Helper()
	return strataOpts(t, store, runOpts{}, args...)
}

func strataOpts(t *testing.T, store string, o runOpts, args ...string) result {
	t.Helper()
	r := strataRun(t, store, o, args...)
	if r.code != 0 || r.err != nil {
		t.Fatalf("expected success from:\n%s", r)
	}
	return r
}

// newStore makes an empty store directory that is checked (no mounts, no
// runc containers, no sessions left) and removed when the test ends.
func newStore(t *testing.T) string {
	t.Helper()
	requireEnv(t)
	dir, err := os.MkdirTemp(workDir, "store-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := releaseStore(dir); err != nil {
			t.Errorf("store %s was not left clean: %v", dir, err)
		}
	})
	return dir
}

// newBusyboxStore makes a fresh store holding busybox:latest.
func newBusyboxStore(t *testing.T) string {
	t.Helper()
	s := newStore(t)
	importBusybox(t, s)
	return s
}

// newSameBusyboxStore is newBusyboxStore with the import's time fixed, so
// that every such store holds the same busybox image, as on machines that
// pull it from one registry.
func newSameBusyboxStore(t *testing.T) string {
	t.Helper()
	s := newStore(t)
	strataOpts(t, s, runOpts{env: []string{"SOURCE_DATE_EPOCH=1577836800"}}, "import", "--change", `CMD ["sh"]`, "--change", "ENV "+imagePATH, busyboxRoot, "busybox:latest")
	return s
}

func importBusybox(t *testing.T, store string) {
	t.Helper()
	strata(t, store, "import", "--change", `CMD ["sh"]`, "--change", "ENV "+imagePATH, busyboxRoot, "busybox:latest")
}

// leftovers reports what strata left behind in store: mounts, runc
// containers, session directories.
func leftovers(store string) []string {
	var out []string
	for _, m := range mountsUnder(store) {
		out = append(out, "mount "+m)
	}
	if ids := testenv.RuncContainers(store); len(ids) > 0 {
		out = append(out, "runc containers "+strings.Join(ids, " "))
	}
	if ents, err := os.ReadDir(filepath.Join(store, "run")); err == nil {
		for _, e := range ents {
			out = append(out, "session dir run/"+e.Name())
		}
	}
	return out
}

// releaseStore checks store for leftovers, releases them anyway (so that the
// suite never leaves mounts or containers behind) and removes the store.
func releaseStore(store string) error {
	if _, err := os.Stat(store); err != nil {
		return nil
	}
	left := leftovers(store)
	for _, id := range testenv.RuncContainers(store) {
		exec.Command("runc", "--root", filepath.Join(store, "runc"), "delete", "--force", id).Run()
	}
	mps := mountsUnder(store)
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, m := range mps {
		if syscall.Unmount(m, 0) != nil {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	if err := removeAllChecked(store); err != nil {
		left = append(left, err.Error())
	}
	if len(left) > 0 {
		return errors.New(strings.Join(left, "; "))
	}
	return nil
}

func removeAllChecked(dir string) error {
	if m := mountsUnder(dir); len(m) > 0 {
		return fmt.Errorf("not removing %s: still mounted: %v", dir, m)
	}
	return os.RemoveAll(dir)
}

// mountsUnder lists the mount points at or below dir (the store's own
// mountinfo reader, which has its own unit tests).
func mountsUnder(dir string) []string { return store.MountsUnder(dir) }

// writeFiles creates a fresh directory holding files (path → content).
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	return testenv.WriteFiles(t, tempDir(t), files)
}

// tempDir is a directory below workDir removed at the end of the test.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ---- archives ----

// tarEntry is one header of a layer tar.
type tarEntry struct {
	Name     string
	Typeflag byte
	Mode     int64
	Size     int64
	Linkname string
}

// readTarFiles reads a tar file into memory: name → content (regular files).
func readTarFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read archive %s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s in %s: %v", h.Name, path, err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = b
	}
	return files
}

// layerEntries lists the headers of a (gzip-compressed or plain) layer tar.
func layerEntries(t *testing.T, blob []byte) []tarEntry {
	t.Helper()
	var r io.Reader = bytes.NewReader(blob)
	if len(blob) > 2 && blob[0] == 0x1f && blob[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		r = zr
	}
	var out []tarEntry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read layer tar: %v", err)
		}
		out = append(out, tarEntry{Name: h.Name, Typeflag: h.Typeflag, Mode: h.Mode, Size: h.Size, Linkname: h.Linkname})
	}
}

func entryNames(es []tarEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

// cleanName is a tar entry name without "./" and trailing "/".
func cleanName(n string) string {
	return strings.TrimSuffix(strings.TrimPrefix(n, "./"), "/")
}

func hasEntry(es []tarEntry, name string) bool {
	for _, e := range es {
		if cleanName(e.Name) == name {
			return true
		}
	}
	return false
}

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociManifest struct {
	Config ociDescriptor   `json:"config"`
	Layers []ociDescriptor `json:"layers"`
}

type imageConfig struct {
	Config struct {
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
		Env        []string `json:"Env"`
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	Created time.Time      `json:"created"`
	History []historyEntry `json:"history"`
}

type historyEntry struct {
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by"`
	EmptyLayer bool      `json:"empty_layer"`
}

// archiveImage is an image read from a docker or OCI archive.
type archiveImage struct {
	refName string // OCI: org.opencontainers.image.ref.name; docker: first RepoTag
	config  imageConfig
	layers  [][]tarEntry
}

// readOCIArchive reads the single image of an OCI archive (tar of an OCI layout).
func readOCIArchive(t *testing.T, path string) archiveImage {
	t.Helper()
	files := readTarFiles(t, path)
	blob := func(d string) []byte {
		t.Helper()
		b, ok := files["blobs/"+strings.Replace(d, ":", "/", 1)]
		if !ok {
			t.Fatalf("%s: blob %s is missing", path, d)
		}
		return b
	}
	if _, ok := files["oci-layout"]; !ok {
		t.Errorf("%s has no oci-layout file", path)
	}
	var idx struct {
		Manifests []ociDescriptor `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatalf("%s: index.json: %v", path, err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("%s: index.json has %d manifests, want 1:\n%s", path, len(idx.Manifests), files["index.json"])
	}
	var img archiveImage
	img.refName = idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"]
	var m ociManifest
	if err := json.Unmarshal(blob(idx.Manifests[0].Digest), &m); err != nil {
		t.Fatalf("%s: manifest: %v", path, err)
	}
	if err := json.Unmarshal(blob(m.Config.Digest), &img.config); err != nil {
		t.Fatalf("%s: config: %v", path, err)
	}
	for _, l := range m.Layers {
		img.layers = append(img.layers, layerEntries(t, blob(l.Digest)))
	}
	return img
}

// readDockerArchive reads the single image of a `docker save` archive.
func readDockerArchive(t *testing.T, path string) archiveImage {
	t.Helper()
	files := readTarFiles(t, path)
	var man []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil {
		t.Fatalf("%s: manifest.json: %v", path, err)
	}
	if len(man) != 1 {
		t.Fatalf("%s: manifest.json has %d images, want 1", path, len(man))
	}
	var img archiveImage
	if len(man[0].RepoTags) > 0 {
		img.refName = man[0].RepoTags[0]
	}
	cfg, ok := files[man[0].Config]
	if !ok {
		t.Fatalf("%s: config %s missing", path, man[0].Config)
	}
	if err := json.Unmarshal(cfg, &img.config); err != nil {
		t.Fatalf("%s: config: %v", path, err)
	}
	for _, l := range man[0].Layers {
		b, ok := files[l]
		if !ok {
			t.Fatalf("%s: layer %s missing", path, l)
		}
		img.layers = append(img.layers, layerEntries(t, b))
	}
	return img
}

// ---- processes and network ----

// startRegistry starts Debian's docker-registry (with its access log) on a
// free 127.0.0.1 port; it is stopped by PID when the test ends.
func startRegistry(t *testing.T) *testenv.Registry {
	t.Helper()
	return testenv.StartDockerRegistry(t, requireTool(t, "docker-registry"), tempDir(t), true)
}

// runTool runs a third-party tool and fails the test with its output on error.
func runTool(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = workDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n--- stdout ---\n%s\n--- stderr ---\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// lineWith returns the first line of s that contains all of subs.
func lineWith(s string, subs ...string) (string, bool) {
	for _, l := range strings.Split(s, "\n") {
		ok := true
		for _, sub := range subs {
			if !strings.Contains(l, sub) {
				ok = false
				break
			}
		}
		if ok {
			return l, true
		}
	}
	return "", false
}
