package reliability

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/test/internal/testenv"

	"github.com/strata-build/strata/internal/store"
)

const imagePATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// result is one finished strata invocation.
type result struct {
	args           []string
	stdout, stderr string
	code           int
	elapsed        time.Duration
	err            error
}

func (r result) String() string {
	e := ""
	if r.err != nil {
		e = "\n  error: " + r.err.Error()
	}
	return fmt.Sprintf("strata %s\n  exit code %d after %s%s\n  --- stdout ---\n%s\n  --- stderr ---\n%s",
		strings.Join(r.args, " "), r.code, r.elapsed.Round(time.Millisecond), e, indent(r.stdout), indent(r.stderr))
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (empty)"
	}
	if len(s) > 6000 {
		s = s[:2000] + "\n...\n" + s[len(s)-3000:]
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// strataEnv is our environment without STRATA_* settings, plus extra.
// STRATA_SNAPSHOTTER is kept, so that the suite can run on either
// snapshotter.
func strataEnv(extra []string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "STRATA_") || strings.HasPrefix(e, "STRATA_SNAPSHOTTER=") {
			env = append(env, e)
		}
	}
	env = append(env, "STRATA_CONFIG="+noConfig)
	return append(env, extra...)
}

type runOpts struct {
	env     []string
	dir     string
	timeout time.Duration
	stdin   io.Reader
}

// strataCmd prepares `strata --root store args...`; a context timeout stops
// it with SIGTERM, then SIGKILL.
func strataCmd(ctx context.Context, store string, o runOpts, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, strataBin, append([]string{"--root", store}, args...)...)
	cmd.Env = strataEnv(o.env)
	cmd.Dir = o.dir
	if cmd.Dir == "" {
		cmd.Dir = workDir
	}
	cmd.Stdin = o.stdin
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	return cmd
}

func strataRun(t testing.TB, store string, o runOpts, args ...string) result {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := strataCmd(ctx, store, o, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	return finished(ctx, cmd, err, &stdout, &stderr, time.Since(start), o.timeout)
}

// finished is the result of cmd, which ran for elapsed and ended with err
// (from Wait or Run) under ctx, a timeout context of timeout.
func finished(ctx context.Context, cmd *exec.Cmd, err error, stdout, stderr *bytes.Buffer, elapsed, timeout time.Duration) result {
	r := result{args: cmd.Args[1:], stdout: stdout.String(), stderr: stderr.String(), elapsed: elapsed, code: -1}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.err = err
	}
	if ctx.Err() != nil {
		r.err = fmt.Errorf("timed out after %s", timeout)
	}
	return r
}

// strata runs strata and fails the test unless it exits 0.
func strata(t testing.TB, store string, args ...string) result {
	t.Helper()
	r := strataRun(t, store, runOpts{}, args...)
	if r.code != 0 || r.err != nil {
		t.Fatalf("expected success from:\n%s", r)
	}
	return r
}

// newStore makes an empty store directory in base (workDir when "") that is
// released (runc containers deleted, mounts unmounted) and removed when the
// test ends; what strata itself left there fails the test.
func newStore(t *testing.T, base string) string {
	t.Helper()
	requireEnv(t)
	if base == "" {
		base = workDir
	}
	dir, err := os.MkdirTemp(base, "store-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if left := leftovers(dir); len(left) > 0 {
			t.Errorf("store %s was not left clean: %q", dir, left)
		}
		releaseStore(dir)
		os.RemoveAll(dir)
	})
	return dir
}

func newBusyboxStore(t *testing.T) string {
	t.Helper()
	s := newStore(t, "")
	importBusybox(t, s)
	return s
}

func importBusybox(t *testing.T, store string) {
	t.Helper()
	strata(t, store, "import", "--change", `CMD ["sh"]`, "--change", "ENV "+imagePATH, busyboxRoot, "busybox:latest")
}

// releaseStore deletes the runc containers and unmounts what is mounted
// below store (not store itself), whoever left them.
func releaseStore(store string) {
	for _, id := range testenv.RuncContainers(store) {
		exec.Command("runc", "--root", filepath.Join(store, "runc"), "delete", "--force", id).Run()
	}
	unmountAllBelow(store)
}

func unmountAllBelow(dir string) {
	mps := mountsUnder(dir)
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, m := range mps {
		if m == dir {
			continue
		}
		if syscall.Unmount(m, 0) != nil {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
}

func unmountAll(dir string) {
	mps := mountsUnder(dir)
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, m := range mps {
		if syscall.Unmount(m, 0) != nil {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
}

// leftovers is what no strata process may leave in store once none runs:
// mounts (below the root; the root may be a mount point itself), runc
// containers, session directories.
func leftovers(store string) []string {
	var out []string
	for _, m := range mountsUnder(store) {
		if m != store {
			out = append(out, "mount "+m)
		}
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

// tempFiles lists what is in store/tmp and the cache's temp names.
func tempFiles(store string) []string {
	var out []string
	if ents, err := os.ReadDir(filepath.Join(store, "tmp")); err == nil {
		for _, e := range ents {
			out = append(out, "tmp/"+e.Name())
		}
	}
	filepath.WalkDir(filepath.Join(store, "cache"), func(p string, d os.DirEntry, err error) error {
		if err == nil && (strings.HasPrefix(d.Name(), ".tmp-") || strings.HasPrefix(d.Name(), ".new-") || strings.HasPrefix(d.Name(), ".stat-")) {
			rel, _ := filepath.Rel(store, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// mountsUnder lists the mount points at or below dir (the store's own
// mountinfo reader, which has its own unit tests).
func mountsUnder(dir string) []string { return store.MountsUnder(dir) }

// writeFiles makes a fresh directory holding files (path → content).
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	return testenv.WriteFiles(t, tempDir(t), files)
}

func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ---- reading the store directly ----

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
}

type imageConfig struct {
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

func blobPath(store, d string) string {
	return filepath.Join(store, "blobs", strings.Replace(d, ":", "/", 1))
}

// readBlob reads a blob and checks its digest.
func readBlob(store, d string) ([]byte, error) {
	b, err := os.ReadFile(blobPath(store, d))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if "sha256:"+hex.EncodeToString(sum[:]) != d {
		return nil, fmt.Errorf("blob %s: content hashes to sha256:%x", d, sum)
	}
	return b, nil
}

// storeImages reads index.json: name → manifest digest.
func storeImages(t testing.TB, store string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(store, "index.json"))
	if err != nil {
		t.Fatalf("index.json: %v", err)
	}
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		corruptions.Add(1)
		t.Fatalf("index.json is not valid JSON (corruption): %v\n%s", err, b)
	}
	out := map[string]string{}
	for _, m := range idx.Manifests {
		out[m.Annotations["org.opencontainers.image.ref.name"]] = m.Digest
	}
	return out
}

// imageIssues checks a tagged image is whole: its manifest, config and
// layer blobs are present and verify, and the diffIDs match the layer count.
func imageIssues(store, manifestDigest string) []string {
	raw, err := readBlob(store, manifestDigest)
	if err != nil {
		return []string{"manifest: " + err.Error()}
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return []string{"manifest: " + err.Error()}
	}
	var out []string
	cb, err := readBlob(store, m.Config.Digest)
	if err != nil {
		return []string{"config: " + err.Error()}
	}
	var c imageConfig
	if err := json.Unmarshal(cb, &c); err != nil {
		out = append(out, "config: "+err.Error())
	} else if len(c.RootFS.DiffIDs) != len(m.Layers) {
		out = append(out, fmt.Sprintf("%d layers, %d diffIDs", len(m.Layers), len(c.RootFS.DiffIDs)))
	}
	for _, l := range m.Layers {
		if _, err := readBlob(store, l.Digest); err != nil {
			out = append(out, "layer: "+err.Error())
		}
	}
	return out
}

// requireWholeImages fails (and counts a corruption) when a tagged image of
// store is not whole, and returns the names.
func requireWholeImages(t testing.TB, store string) map[string]string {
	t.Helper()
	imgs := storeImages(t, store)
	for name, d := range imgs {
		if issues := imageIssues(store, d); len(issues) > 0 {
			corruptions.Add(1)
			t.Errorf("CORRUPTION: tagged image %s (%s) is not whole: %s", name, d, strings.Join(issues, "; "))
		}
	}
	return imgs
}

// fsckProblem is one problem line of `strata fsck`.
type fsckProblem struct{ kind, line string }

// runFsck runs strata fsck [args] and parses its problem lines.
func runFsck(t testing.TB, store string, args ...string) (result, []fsckProblem) {
	t.Helper()
	fsckRuns.Add(1)
	r := strataRun(t, store, runOpts{}, append([]string{"fsck"}, args...)...)
	var ps []fsckProblem
	for _, l := range strings.Split(r.stdout, "\n") {
		if l == "" || strings.HasPrefix(l, "checked ") {
			continue
		}
		kind, _, _ := strings.Cut(l, " ")
		ps = append(ps, fsckProblem{kind, l})
	}
	return r, ps
}

// requireFsckClean runs strata fsck, which must exit 0. Problems of the
// kinds in tolerate (leftovers of a killed process that the next command
// should have removed: known bugs, counted and reported) are repaired with
// fsck --repair; every other problem is a corruption.
func requireFsckClean(t testing.TB, store string, tolerate ...string) {
	t.Helper()
	r, ps := runFsck(t, store)
	if r.code == 0 && len(ps) == 0 {
		return
	}
	var other []string
	tolerated := map[string]int{}
	for _, p := range ps {
		if slices.Contains(tolerate, p.kind) {
			tolerated[p.kind]++
			continue
		}
		other = append(other, p.line)
	}
	if len(other) > 0 || r.code != 1 || r.err != nil {
		corruptions.Add(int64(max(1, len(other))))
		t.Fatalf("CORRUPTION: strata fsck found problems:\n%s", r)
	}
	tempLeftovers.Add(int64(tolerated["temp"]))
	orphanContainers.Add(int64(tolerated["container"]))
	t.Logf("fsck: leftovers of the killed process the next command did not remove: %v (known bugs: see TestBug*)", tolerated)
	rr, _ := runFsck(t, store, "--repair")
	if rr.code != 0 {
		t.Fatalf("strata fsck --repair did not repair the leftovers:\n%s", rr)
	}
	if r2, ps2 := runFsck(t, store); r2.code != 0 || len(ps2) > 0 {
		t.Fatalf("strata fsck after --repair is not clean:\n%s", r2)
	}
}

// requireNoLeftovers fails when strata left mounts, containers or sessions.
func requireNoLeftovers(t testing.TB, store, when string) {
	t.Helper()
	if left := leftovers(store); len(left) > 0 {
		t.Errorf("%s: left behind: %q", when, left)
		releaseStore(store)
		os.RemoveAll(filepath.Join(store, "run"))
		os.MkdirAll(filepath.Join(store, "run"), 0o700)
	}
}

// ---- images as file trees ----

// fileEntry is one path of a flattened image.
type fileEntry struct {
	typ     byte
	mode    int64
	content string
	link    string
	devmaj  int64
	devmin  int64
}

// imageFiles flattens the layers of the tagged image ref (a name in
// index.json) of store: path → entry, whiteouts applied.
func imageFiles(t testing.TB, store, ref string) map[string]fileEntry {
	t.Helper()
	imgs := storeImages(t, store)
	d, ok := imgs[ref]
	if !ok {
		t.Fatalf("image %s is not in the store (have %v)", ref, keys(imgs))
	}
	raw, err := readBlob(store, d)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	files := map[string]fileEntry{}
	for _, l := range m.Layers {
		b, err := readBlob(store, l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		for name, e := range layerFiles(t, b) {
			dir, base := path.Split(name)
			switch {
			case base == ".wh..wh..opq":
				for k := range files {
					if strings.HasPrefix(k, dir) && k != strings.TrimSuffix(dir, "/") {
						delete(files, k)
					}
				}
			case strings.HasPrefix(base, ".wh."):
				gone := dir + strings.TrimPrefix(base, ".wh.")
				for k := range files {
					if k == gone || strings.HasPrefix(k, gone+"/") {
						delete(files, k)
					}
				}
			default:
				files[name] = e
			}
		}
	}
	return files
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// layerFiles reads a (compressed) layer blob: clean path → entry.
func layerFiles(t testing.TB, blob []byte) map[string]fileEntry {
	t.Helper()
	zr, err := layer.Decompress(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out := map[string]fileEntry{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read layer: %v", err)
		}
		e := fileEntry{typ: h.Typeflag, mode: h.Mode, link: h.Linkname, devmaj: h.Devmajor, devmin: h.Devminor}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(io.LimitReader(tr, 1<<20))
			e.content = string(b)
		}
		out[strings.TrimSuffix(path.Clean(strings.TrimPrefix(h.Name, "./")), "/")] = e
	}
}
