package reliability

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
	"golang.org/x/sys/unix"
)

// ---- tar building ----

type tent struct {
	hdr  tar.Header
	body string
}

var epoch = time.Unix(1700000000, 0)

func tfile(name, body string) tent {
	return tent{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: epoch}, body: body}
}

func tdir(name string) tent {
	return tent{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}}
}

func tsymlink(name, target string) tent {
	return tent{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, ModTime: epoch}}
}

func thardlink(name, target string) tent {
	return tent{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644, ModTime: epoch}}
}

func tdev(name string, typ byte, major, minor int64) tent {
	return tent{hdr: tar.Header{Name: name, Typeflag: typ, Mode: 0o666, Devmajor: major, Devminor: minor, ModTime: epoch}}
}

func tarBytes(t *testing.T, ents []tent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipBytes(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// ---- the host must stay as it was ----

// hostGuard is a directory beside the store with a sentinel directory (the
// target of every escape) and a canary file outside every build context
// (the source of every read escape), plus the host's /etc/passwd.
type hostGuard struct {
	base, store   string
	sentinel      string // base/sentinel: nothing may be written there
	outside       string // base/outside: canary.txt holds marker
	marker        string
	passwd        []byte
	sentinelState string
	baseEntries   []string
}

func newHostGuard(t *testing.T) *hostGuard {
	t.Helper()
	suite.RequireBuild(t)
	base := suite.TempDir(t)
	g := &hostGuard{base: base, sentinel: filepath.Join(base, "sentinel"), outside: filepath.Join(base, "outside")}
	g.marker = fmt.Sprintf("CANARY-%d-%d-%x", os.Getpid(), time.Now().UnixNano(), randIntn(1<<30))
	os.MkdirAll(filepath.Join(g.sentinel, "sub"), 0o755)
	os.WriteFile(filepath.Join(g.sentinel, "keep"), []byte("untouched\n"), 0o644)
	os.WriteFile(filepath.Join(g.sentinel, "sub", "keep2"), []byte("untouched too\n"), 0o600)
	os.MkdirAll(g.outside, 0o755)
	os.WriteFile(filepath.Join(g.outside, "canary.txt"), []byte(g.marker+"\n"), 0o644)
	var err error
	if g.passwd, err = os.ReadFile("/etc/passwd"); err != nil {
		t.Fatal(err)
	}
	g.store = suite.NewStoreIn(t, base)
	g.sentinelState = treeState(t, g.sentinel)
	g.baseEntries = dirNames(base)
	t.Cleanup(func() { g.check(t, "end of test") })
	return g
}

// hostLines is /etc/passwd without the lines of users the tests create.
func hostLines(passwd []byte) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(passwd, []byte("\n")) {
		if !testenv.IsTestUserLine(string(l)) {
			out = append(out, l...)
		}
	}
	return out
}

// testUserLines is the lines of users the tests create.
func testUserLines(passwd []byte) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(passwd, []byte("\n")) {
		if len(l) > 0 && testenv.IsTestUserLine(string(l)) {
			out = append(out, l...)
		}
	}
	return out
}

func dirNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// treeState describes every entry below dir: path, type, mode, size, content hash.
func treeState(t testing.TB, dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			return nil
		}
		var st unix.Stat_t
		unix.Lstat(p, &st)
		sum := ""
		if d.Type().IsRegular() {
			c, _ := os.ReadFile(p)
			sum = fmt.Sprintf("%x", sha256.Sum256(c))
		}
		fmt.Fprintf(&b, "%s %o %d %d:%d %s\n", p, st.Mode, st.Size, st.Uid, st.Gid, sum)
		return nil
	})
	return b.String()
}

// check fails the test when anything outside the store changed: the
// sentinel directory, the host's /etc/passwd (restored if it did), new
// entries beside the store, files named *pwned* in /, /etc, /tmp.
func (g *hostGuard) check(t *testing.T, label string) {
	t.Helper()
	escape := func(format string, a ...any) {
		t.Helper()
		corruptions.Add(1)
		t.Errorf("ESCAPE (%s): "+format, append([]any{label}, a...)...)
	}
	if s := treeState(t, g.sentinel); s != g.sentinelState {
		escape("the sentinel directory beside the store changed:\nbefore:\n%s\nafter:\n%s", g.sentinelState, s)
		os.RemoveAll(g.sentinel)
		os.MkdirAll(filepath.Join(g.sentinel, "sub"), 0o755)
		os.WriteFile(filepath.Join(g.sentinel, "keep"), []byte("untouched\n"), 0o644)
		os.WriteFile(filepath.Join(g.sentinel, "sub", "keep2"), []byte("untouched too\n"), 0o600)
		g.sentinelState = treeState(t, g.sentinel)
	}
	// Users other suites create and remove meanwhile (test/rootless) do
	// not count; any other change does, and is undone.
	if b, err := os.ReadFile("/etc/passwd"); err != nil || !bytes.Equal(hostLines(b), hostLines(g.passwd)) {
		escape("the host's /etc/passwd changed (restored)")
		os.WriteFile("/etc/passwd", append(hostLines(g.passwd), testUserLines(b)...), 0o644)
	}
	for _, n := range dirNames(g.base) {
		if !contains(g.baseEntries, n) && !strings.HasPrefix(n, "ctx-") && !strings.HasPrefix(n, "out-") {
			escape("new entry %q beside the store", n)
		}
	}
	for _, d := range []string{"/", "/etc", "/tmp", g.base, filepath.Dir(g.base)} {
		for _, n := range dirNames(d) {
			if strings.Contains(n, "pwned") {
				escape("%s/%s exists", d, n)
			}
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// ctxDir makes a build context beside the store (base/ctx-*).
func (g *hostGuard) ctxDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp(g.base, "ctx-")
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// requireNoCanary fails when the canary from outside every context is
// anywhere in the store (blobs decompressed, cache, unpacked layers).
func (g *hostGuard) requireNoCanary(t *testing.T) {
	t.Helper()
	if hits := grepTree(t, g.store, []byte(g.marker)); len(hits) > 0 {
		corruptions.Add(1)
		t.Errorf("ESCAPE: a file from outside the build context was read into the store: %q", hits)
	}
}

// ---- the outcome of one hostile build ----

type outcome int

const (
	mustFail outcome = iota
	mustSucceed
	either // no host write is all that counts
)

// judge checks a hostile build's result: the expected outcome, a clear error
// when it failed, the host untouched, nothing left behind, the store whole.
func (g *hostGuard) judge(t *testing.T, r result, want outcome, words string) {
	t.Helper()
	hostileTried.Add(1)
	if r.Err != nil {
		t.Fatalf("%s", r)
	}
	lastLine := ""
	if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); len(lines) > 0 {
		lastLine = lines[len(lines)-1]
	}
	switch {
	case r.Code == 0:
		t.Logf("succeeded")
		if want == mustFail {
			t.Errorf("a hostile input was accepted:\n%s", r)
		}
	default:
		t.Logf("failed (exit %d): %s", r.Code, lastLine)
		if want == mustSucceed {
			t.Errorf("expected success:\n%s", r)
		} else if r.Code != 1 {
			t.Errorf("exit code %d, want 1:\n%s", r.Code, r)
		}
		msg := strings.ToLower(r.Stderr)
		found := words == ""
		for _, w := range strings.Split(words, "|") {
			found = found || (w != "" && strings.Contains(msg, w))
		}
		if !found || !strings.Contains(msg, "error") {
			t.Errorf("the error does not say %q:\n%s", words, r)
		}
		if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") {
			t.Errorf("strata panicked:\n%s", r)
		}
	}
	if strings.Contains(r.Stdout+r.Stderr, g.marker) {
		corruptions.Add(1)
		t.Errorf("ESCAPE: the output shows the canary from outside the build context:\n%s", r)
	}
	g.check(t, t.Name())
	requireNoLeftovers(t, g.store, "after a hostile build")
	if tmp := tempFiles(g.store); len(tmp) > 0 {
		t.Errorf("temp files left after a hostile build: %q", tmp)
	}
	requireWholeImages(t, g.store)
}

// busyboxLayer returns the layer blob of the store's busybox:latest and its diffID.
func busyboxLayer(t *testing.T, store string) ([]byte, string) {
	t.Helper()
	d := storeImages(t, store)["docker.io/library/busybox:latest"]
	m, err := testenv.StoreManifest(store, d)
	if err != nil {
		t.Fatalf("busybox manifest: %v", err)
	}
	c, err := testenv.StoreConfig(store, m)
	if err != nil || len(c.RootFS.DiffIDs) != 1 || len(m.Layers) != 1 {
		t.Fatalf("busybox config: %v", err)
	}
	b, err := testenv.ReadBlob(store, m.Layers[0].Digest.String())
	if err != nil {
		t.Fatalf("busybox layer: %v", err)
	}
	return b, c.RootFS.DiffIDs[0].String()
}

// ---- hostile base images ----

// TestHostileBaseImages builds FROM images whose layers try to write
// outside the directory they are unpacked into, carry device nodes, repeat
// entries, or do not match their digests. Each build must fail clearly or
// give a safe result; nothing outside the store may change.
func TestHostileBaseImages(t *testing.T) {
	t.Parallel()
	g := newHostGuard(t)
	suite.ImportBusybox(t, g.store)
	bbBlob, bbDiffID := busyboxLayer(t, g.store)
	// Served instead of the real blob: a registry that lies about content.
	var swapped = map[string][]byte{}
	reg := testenv.StartRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
		for d, b := range swapped {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
				w.Header().Set("Content-Length", fmt.Sprint(len(b)))
				w.Header().Set("Docker-Content-Digest", d)
				w.Write(b)
				return true
			}
		}
		return false
	})
	abs := strings.TrimPrefix(g.sentinel, "/")
	var st unix.Stat_t
	unix.Stat("/", &st)
	diskMaj, diskMin := int64(unix.Major(st.Dev)), int64(unix.Minor(st.Dev))
	if diskMaj == 0 {
		diskMaj, diskMin = 8, 0
	}
	// hostPasswdPlus would be the host's passwd with one more user, were a
	// write through a symlink to reach it.
	hostPasswdPlus := string(g.passwd) + "pwned:x:4242:4242::/nonexistent:/bin/false\n"
	up := strings.Repeat("../", 12)

	type layerCase struct {
		name   string
		layers [][]tent
		img    func(t *testing.T) rawImage // instead of layers
		swap   bool                        // serve other bytes for the last layer
		run    string                      // after FROM; default RUN echo built > /built
		args   []string
		want   outcome
		words  string
		check  func(t *testing.T, files map[string]fileEntry)
	}
	cases := []layerCase{
		{name: "dotdot", layers: [][]tent{{tfile("../../../sentinel/pwned-dotdot", "x")}}, want: mustFail, words: "escapes|.."},
		{name: "dotdot-inner", layers: [][]tent{{tdir("a/"), tfile("a/../../../../sentinel/pwned-inner", "x")}}, want: mustFail, words: "escapes|.."},
		{name: "absolute", layers: [][]tent{{tfile(g.sentinel+"/pwned-abs", "x")}}, want: either, words: "absolute"},
		{name: "symlink-abs-then-write", layers: [][]tent{{tsymlink("esc", g.sentinel), tfile("esc/pwned-symabs", "x")}}, want: either, words: "no such file|symlink|esc"},
		{name: "symlink-rel-then-write", layers: [][]tent{{tsymlink("up", up), tfile("up/"+abs+"/pwned-symrel", "x")}}, want: either, words: "no such file|symlink|up"},
		{name: "symlink-dir-then-mkdir-write", layers: [][]tent{{tsymlink("esc2", g.sentinel), tdir("esc2/newdir/"), tfile("esc2/newdir/pwned-mkdir", "x")}}, want: either, words: "no such file|exists|esc2"},
		{name: "symlink-etc-then-passwd", layers: [][]tent{{tsymlink("etc", "/etc"), tfile("etc/passwd", hostPasswdPlus)}}, want: either, words: "loop|symbolic|no such|etc"},
		{name: "symlink-in-lower-write-in-upper", layers: [][]tent{{tsymlink("link", g.sentinel)}, {tdir("link/"), tfile("link/pwned-layered", "x")}},
			run: "RUN ls -la /link/ > /listing", args: []string{"-o", "type=local,dest=" + filepath.Join(g.base, "out-layered")}, want: either},
		{name: "symlink-chain", layers: [][]tent{{tsymlink("a", "b"), tsymlink("b", "c"), tsymlink("c", g.sentinel), tfile("a/pwned-chain", "x")}}, want: either},
		{name: "symlink-loop", layers: [][]tent{{tsymlink("l1", "l2"), tsymlink("l2", "l1"), tfile("l1/pwned-loop", "x")}}, want: either, words: "loop|too many|l1"},
		{name: "hardlink-dotdot", layers: [][]tent{{thardlink("hl", up+"etc/passwd")}}, want: mustFail, words: "escapes|hardlink"},
		{name: "hardlink-absolute", layers: [][]tent{{thardlink("hl", "/etc/passwd")}}, want: mustFail, words: "absolute|hardlink"},
		{name: "hardlink-via-symlink", layers: [][]tent{{tsymlink("s", "/etc"), thardlink("hl", "s/passwd")}}, run: "RUN echo pwned >> /hl || true", want: either, words: "hardlink|no such"},
		{name: "hardlink-to-lower-layer", layers: [][]tent{{thardlink("hl", "bin/busybox")}}, want: either, words: "hardlink|no such"},
		{name: "devices", layers: [][]tent{{tdev("dev-disk", tar.TypeBlock, diskMaj, diskMin), tdev("dev-mem", tar.TypeChar, 1, 1), tdev("dev-kmsg", tar.TypeChar, 1, 11)}},
			run:  "RUN (head -c 512 /dev-disk >/dev/null 2>&1 && echo OPENED || echo DENIED) > /r-disk; (head -c 1 /dev-mem >/dev/null 2>&1 && echo OPENED || echo DENIED) > /r-mem; (echo pwned > /dev-kmsg 2>/dev/null && echo OPENED || echo DENIED) > /r-kmsg",
			want: mustSucceed,
			check: func(t *testing.T, files map[string]fileEntry) {
				for _, f := range []string{"r-disk", "r-mem", "r-kmsg"} {
					if got := files[f].content; got != "DENIED\n" {
						corruptions.Add(1)
						t.Errorf("ESCAPE: a RUN could open a device node from a base image layer (%s: %q)", f, got)
					}
				}
			}},
		{name: "duplicates", layers: [][]tent{{
			tfile("dup", "one"), tfile("dup", "two"),
			tfile("d", "file first"), tdir("d/"), tfile("d/inner", "in"),
			tdir("e/"), tfile("e/y", "y"), tfile("e", "now a file"),
			tdir("f/"), tdir("f/"), tfile("f/z", "z"),
			tsymlink("g", "/etc"), tdir("g/"), tfile("g/h", "h"),
		}},
			run:  "RUN cat /dup > /r-dup; cat /d/inner > /r-d; cat /e > /r-e; cat /f/z > /r-f; cat /g/h > /r-g",
			want: mustSucceed,
			check: func(t *testing.T, files map[string]fileEntry) {
				for f, want := range map[string]string{"r-dup": "two", "r-d": "in", "r-e": "now a file", "r-f": "z", "r-g": "h"} {
					if got := files[f].content; got != want {
						t.Errorf("duplicate entries: /%s = %q, want %q (the last entry wins)", f, got, want)
					}
				}
			}},
		{name: "root-entry-symlink", layers: [][]tent{{tsymlink("./", "/etc"), tfile("pwned-root", "x")}}, want: either},
		{name: "whiteout-dotdot", layers: [][]tent{{tfile(".wh..", "")}}, want: mustFail, words: "whiteout"},
		{name: "whiteout-through-symlink", layers: [][]tent{{tsymlink("w", g.sentinel), tfile("w/.wh.keep", "")}}, want: either},
		{name: "opaque-through-symlink", layers: [][]tent{{tsymlink("o", g.sentinel), tfile("o/.wh..wh..opq", "")}}, want: either},
		{name: "overlay-xattrs", layers: [][]tent{{
			{hdr: tar.Header{Name: "red/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.redirect": g.sentinel, "SCHILY.xattr.trusted.overlay.opaque": "y"}}},
		}}, run: "RUN ls /red > /r-red", want: either},
		{name: "deep-path", layers: [][]tent{{tfile(strings.Repeat("d/", 300)+"f", "deep")}}, want: either},
		{name: "long-name", layers: [][]tent{{tfile(strings.Repeat("n", 300), "x")}}, want: either, words: "name too long|too long"},
		{name: "truncated-gzip", img: func(t *testing.T) rawImage {
			tb := tarBytes(t, []tent{tfile("big", strings.Repeat("0123456789", 100000))})
			gz := gzipBytes(tb)
			return rawImage{layers: [][]byte{bbBlob, gz[:len(gz)/2]}, diffIDs: []string{bbDiffID, sha(tb)}}
		}, want: mustFail, words: "eof|unexpected|gzip"},
		{name: "corrupt-gzip", img: func(t *testing.T) rawImage {
			tb := tarBytes(t, []tent{tfile("big", strings.Repeat("abcdefghij", 100000))})
			gz := gzipBytes(tb)
			for i := len(gz) / 3; i < len(gz)/3+64; i++ {
				gz[i] ^= 0x5a
			}
			return rawImage{layers: [][]byte{bbBlob, gz}, diffIDs: []string{bbDiffID, sha(tb)}}
		}, want: mustFail, words: "gzip|checksum|invalid|corrupt|flate"},
		{name: "diffid-mismatch", img: func(t *testing.T) rawImage {
			tb := tarBytes(t, []tent{tfile("x", "x")})
			return rawImage{layers: [][]byte{bbBlob, gzipBytes(tb)}, diffIDs: []string{bbDiffID, sha([]byte("something else"))}}
		}, want: mustFail, words: "diffid"},
		{name: "digest-mismatch", layers: [][]tent{{tfile("x", "the real content")}}, swap: true, want: mustFail, words: "digest mismatch|does not match|verif|expected"},
		{name: "not-a-tar", img: func(t *testing.T) rawImage {
			junk := bytes.Repeat([]byte("this is not a tar archive "), 100)
			return rawImage{layers: [][]byte{bbBlob, gzipBytes(junk)}, diffIDs: []string{bbDiffID, sha(junk)}}
		}, want: mustFail, words: "tar|header|invalid"},
		{name: "diffids-fewer-than-layers", img: func(t *testing.T) rawImage {
			return rawImage{layers: [][]byte{bbBlob, gzipBytes(tarBytes(t, []tent{tfile("x", "x")}))}, diffIDs: []string{bbDiffID}}
		}, want: mustFail, words: "diffid|layers"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A neutral name: the error messages name the image, and must
			// not pass the word checks by that alone.
			repo := fmt.Sprintf("hostile/c%d", i)
			t.Logf("image %s/%s:1", reg, repo)
			var img rawImage
			if c.img != nil {
				img = c.img(t)
			} else {
				img.layers = [][]byte{bbBlob}
				img.diffIDs = []string{bbDiffID}
				for _, ents := range c.layers {
					tb := tarBytes(t, ents)
					img.layers = append(img.layers, gzipBytes(tb))
					img.diffIDs = append(img.diffIDs, sha(tb))
				}
			}
			img.config = imageConfigJSON(img.diffIDs)
			pushRaw(t, reg, repo, "1", img)
			if c.swap {
				// Other bytes of the same length: only the digest can tell.
				last := img.layers[len(img.layers)-1]
				other := bytes.Clone(last)
				other[len(other)/2] ^= 0xff
				swapped[sha(last)] = other
			}
			run := c.run
			if run == "" {
				run = "RUN echo built > /built"
			}
			ctx := g.ctxDir(t, map[string]string{"Dockerfile": "FROM " + reg + "/" + repo + ":1\n" + run + "\n"})
			out := "out-" + strings.ReplaceAll(c.name, "/", "-")
			r := strataRun(t, g.store, runOpts{}, append([]string{"build", "--progress", "plain", "-t", out}, append(c.args, ctx)...)...)
			g.judge(t, r, c.want, c.words)
			if r.Code == 0 && c.check != nil {
				c.check(t, imageFiles(t, g.store, "docker.io/library/"+out+":latest"))
			}
		})
	}
	// fsck --deep re-reads every layer. A base image is resolved, not
	// pulled, and named in the store only once all its layers are there
	// and the build worked: the images whose layers cannot be unpacked
	// never are, so it finds nothing.
	r, ps := runFsck(t, g.store, "--deep")
	for _, p := range ps {
		corruptions.Add(1)
		t.Errorf("fsck --deep: unexpected problem %s", p.line)
	}
	imgs := storeImages(t, g.store)
	for i, c := range cases {
		switch c.name {
		case "truncated-gzip", "corrupt-gzip", "diffid-mismatch", "not-a-tar":
			if name := fmt.Sprintf("%s/hostile/c%d:1", reg, i); imgs[name] != "" {
				t.Errorf("%s (%s), whose layers cannot be unpacked, is named in the store", name, c.name)
			}
		}
	}
	t.Logf("fsck --deep on the store of hostile images (exit %d):\n%s", r.Code, testenv.Indent(r.Stdout))
	if rr, _ := runFsck(t, g.store, "--repair", "--deep"); rr.Code != 0 {
		t.Errorf("fsck --repair:\n%s", rr)
	}
	requireFsckClean(t, g.store)
	g.requireNoCanary(t)
}

// ---- docker archives (strata load) ----

// dockerArchive makes a `docker save` tar of one image; extra members are
// added as they are.
func dockerArchive(t *testing.T, tag string, layers [][]byte, manifestLayers []string, extra []tent) []byte {
	t.Helper()
	var diffIDs []string
	var ents []tent
	var names []string
	for i, l := range layers {
		diffIDs = append(diffIDs, sha(l))
		n := fmt.Sprintf("layer%d/layer.tar", i)
		names = append(names, n)
		ents = append(ents, tent{hdr: tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(l)), ModTime: epoch}, body: string(l)})
	}
	if manifestLayers != nil {
		names = manifestLayers
	}
	cfg := imageConfigJSON(diffIDs)
	cfgName := strings.TrimPrefix(sha(cfg), "sha256:") + ".json"
	ents = append(ents, tent{hdr: tar.Header{Name: cfgName, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(cfg)), ModTime: epoch}, body: string(cfg)})
	m, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{tag}, "Layers": names}})
	ents = append(ents, tent{hdr: tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(m)), ModTime: epoch}, body: string(m)})
	return tarBytes(t, append(ents, extra...))
}

// TestHostileArchivesAndContexts covers what reaches strata other than
// through a registry: docker archives loaded with strata load, build
// contexts with symlinks pointing outside, COPY/ADD whose destination goes
// through an image's symlink to outside the root, ADD of archives with tar
// tricks, and bind mounts and sources that name paths outside the context.
func TestHostileArchivesAndContexts(t *testing.T) {
	t.Parallel()
	g := newHostGuard(t)
	suite.ImportBusybox(t, g.store)
	bbBlob, bbDiffID := busyboxLayer(t, g.store)
	bbTar := gunzip(t, bbBlob)
	if sha(bbTar) != bbDiffID {
		t.Fatal("busybox layer: diffID mismatch")
	}
	up := strings.Repeat("../", 12)
	abs := strings.TrimPrefix(g.sentinel, "/")

	t.Run("load", func(t *testing.T) {
		cases := []struct {
			name           string
			layer          []tent
			manifestLayers []string
			extra          []tent
			want           outcome
			words          string
		}{
			{name: "dotdot-layer", layer: []tent{tfile(up+abs+"/pwned-load", "x")}, want: mustFail, words: "escapes|.."},
			{name: "hardlink-outside", layer: []tent{thardlink("hl", "/etc/passwd")}, want: mustFail, words: "absolute|hardlink"},
			{name: "symlink-then-write", layer: []tent{tsymlink("esc", g.sentinel), tfile("esc/pwned-load-sym", "x")}, want: either},
			{name: "manifest-layer-outside", layer: []tent{tfile("x", "x")}, manifestLayers: []string{"layer0/layer.tar", "../../../../etc/passwd"}, want: mustFail, words: "not found|no such|passwd|layer"},
			{name: "member-dotdot", layer: []tent{tfile("x", "x")}, extra: []tent{tfile(up+abs+"/pwned-member", "x"), tfile("/"+abs+"/pwned-member-abs", "x")}, want: either},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tag := "hostile-load/" + c.name + ":1"
				arch := dockerArchive(t, tag, [][]byte{bbTar, tarBytes(t, c.layer)}, c.manifestLayers, c.extra)
				p := filepath.Join(g.base, "ctx-"+c.name+".tar")
				os.WriteFile(p, arch, 0o644)
				r := strataRun(t, g.store, runOpts{}, "load", "-i", p)
				if r.Code == 0 {
					ctx := g.ctxDir(t, map[string]string{"Dockerfile": "FROM " + tag + "\nRUN echo built > /built\n"})
					r = strataRun(t, g.store, runOpts{}, "build", "-t", "out-load-"+c.name, ctx)
				}
				g.judge(t, r, c.want, c.words)
			})
		}
	})

	// An image with symlinks that point outside the root, for COPY and ADD
	// destinations: imported from a docker archive.
	links := tarBytes(t, []tent{tsymlink("out", g.sentinel), tsymlink("up2", up), tsymlink("rel", "../../../../sentinel")})
	arch := dockerArchive(t, "links:1", [][]byte{bbTar, links}, nil, nil)
	archPath := filepath.Join(g.base, "ctx-links.tar")
	os.WriteFile(archPath, arch, 0o644)
	strata(t, g.store, "load", "-i", archPath)

	evilTar := func(ents ...tent) string { return string(tarBytes(t, ents)) }
	ctxFiles := map[string]string{
		"x":            "copied\n",
		"dotdot.tar":   evilTar(tfile(up+abs+"/pwned-add-dotdot", "x")),
		"abs.tar":      evilTar(tfile(g.sentinel+"/pwned-add-abs", "x")),
		"symlink.tar":  evilTar(tsymlink("l", g.sentinel), tfile("l/pwned-add-sym", "x")),
		"hardlink.tar": evilTar(thardlink("hl", up+"etc/passwd")),
		"hlabs.tar":    evilTar(thardlink("hl", "/etc/passwd")),
		"dev.tar":      evilTar(tdev("mem", tar.TypeChar, 1, 1)),
		"dup.tar":      evilTar(tfile("d", "1"), tdir("d/"), tfile("d/e", "2"), tfile("d", "3")),
		"gz.tar.gz":    string(gzipBytes(tarBytes(t, []tent{tsymlink("z", "/etc"), tfile("z/pwned-gz", "x")}))),
	}
	type ctxCase struct {
		name       string
		dockerfile string
		files      map[string]string // more context files
		symlinks   map[string]string // context symlinks: name → target
		want       outcome
		words      string
		check      func(t *testing.T, files map[string]fileEntry)
	}
	noSentinelPath := func(t *testing.T, files map[string]fileEntry) {
		// Where COPY put x: inside the rootfs, at the symlink's target
		// resolved in the root (as BuildKit does), never on the host.
		t.Logf("image paths under the link target: %v", filter(keys(files), abs))
	}
	cases := []ctxCase{
		{name: "copy-through-abs-symlink", dockerfile: "FROM links:1\nCOPY x /out/x\n", want: either, check: noSentinelPath},
		{name: "copy-into-abs-symlink-dir", dockerfile: "FROM links:1\nCOPY x /out/\n", want: either, check: noSentinelPath},
		{name: "copy-through-rel-symlink", dockerfile: "FROM links:1\nCOPY x /up2" + g.sentinel + "/x\n", want: either, check: noSentinelPath},
		{name: "copy-through-rel-symlink2", dockerfile: "FROM links:1\nCOPY x /rel/x\n", want: either},
		{name: "workdir-through-symlink", dockerfile: "FROM links:1\nWORKDIR /out\nCOPY x y\n", want: either, check: noSentinelPath},
		{name: "add-through-symlink", dockerfile: "FROM links:1\nADD symlink.tar /out/\n", want: either},
		{name: "copy-chown-through-symlink", dockerfile: "FROM links:1\nCOPY --chown=1:1 --chmod=777 x /out/x\n", want: either},
		{name: "run-bind-target-through-symlink", dockerfile: "FROM links:1\nRUN --mount=type=bind,source=x,target=/out/mnt true\n", want: either},
		{name: "add-tar-dotdot", dockerfile: "FROM busybox\nADD dotdot.tar /dst/\n", want: either, words: "escapes|.."},
		{name: "add-tar-absolute", dockerfile: "FROM busybox\nADD abs.tar /dst/\n", want: either},
		{name: "add-tar-symlink-write", dockerfile: "FROM busybox\nADD symlink.tar /dst/\n", want: either},
		{name: "add-tar-hardlink-dotdot", dockerfile: "FROM busybox\nADD hardlink.tar /dst/\n", want: mustFail, words: "escapes|hardlink"},
		{name: "add-tar-hardlink-abs", dockerfile: "FROM busybox\nRUN echo mine > /etc/passwd\nADD hlabs.tar /dst/\nRUN echo pwned >> /dst/hl\n", want: either,
			check: func(t *testing.T, files map[string]fileEntry) {
				if c := files["dst/hl"].content; strings.Contains(c, "root:x:0:0") && !strings.HasPrefix(c, "mine") {
					t.Errorf("ADD linked /dst/hl to the host's /etc/passwd content: %q", c)
				}
			}},
		{name: "add-tar-device", dockerfile: "FROM busybox\nADD dev.tar /dst/\nRUN (head -c 1 /dst/mem >/dev/null 2>&1 && echo OPENED || echo DENIED) > /r\n", want: either,
			check: func(t *testing.T, files map[string]fileEntry) {
				if files["r"].content == "OPENED\n" {
					corruptions.Add(1)
					t.Errorf("ESCAPE: a RUN could read /dev/mem through a device node from ADD")
				}
			}},
		{name: "add-tar-duplicates", dockerfile: "FROM busybox\nADD dup.tar /dst/\n", want: either},
		{name: "add-tar-gz-symlink", dockerfile: "FROM busybox\nADD gz.tar.gz /dst/\n", want: either},
		{name: "context-symlink-abs", dockerfile: "FROM busybox\nCOPY lnk /lnk\n", symlinks: map[string]string{"lnk": filepath.Join(g.outside, "canary.txt")}, want: either, words: "not found|no such|outside|lnk"},
		{name: "context-symlink-rel", dockerfile: "FROM busybox\nCOPY dlnk/canary.txt /c\n", symlinks: map[string]string{"dlnk": "../outside"}, want: either, words: "not found|no such|outside|dlnk"},
		{name: "context-symlink-dir-copy", dockerfile: "FROM busybox\nCOPY dlnk /d/\n", symlinks: map[string]string{"dlnk": "../outside"}, want: either},
		{name: "context-symlink-whole-context", dockerfile: "FROM busybox\nCOPY . /ctx/\n", symlinks: map[string]string{"dlnk": "../outside", "lnk": filepath.Join(g.outside, "canary.txt")}, want: either},
		{name: "copy-dotdot-source", dockerfile: "FROM busybox\nCOPY ../outside/canary.txt /c\n", want: either, words: "not found|no such|outside|canary"},
		{name: "copy-abs-source", dockerfile: "FROM busybox\nCOPY " + filepath.Join(g.outside, "canary.txt") + " /c\n", want: either, words: "not found|no such|outside|canary"},
		{name: "bind-mount-dotdot-source", dockerfile: "FROM busybox\nRUN --mount=type=bind,source=../outside,target=/m cat /m/canary.txt > /leak || true\n", want: either, words: "not found|no such|outside"},
		{name: "bind-mount-symlink-source", dockerfile: "FROM busybox\nRUN --mount=type=bind,source=dlnk,target=/m cat /m/canary.txt > /leak || true\n", symlinks: map[string]string{"dlnk": "../outside"}, want: either},
		{name: "copy-from-image-dotdot", dockerfile: "FROM busybox\nCOPY --from=busybox " + up + "etc/passwd /p\n", want: either,
			check: func(t *testing.T, files map[string]fileEntry) {
				if files["p"].content == string(g.passwd) {
					corruptions.Add(1)
					t.Errorf("ESCAPE: COPY --from=busybox ../../etc/passwd copied the host's /etc/passwd")
				}
			}},
		{name: "dockerignore-symlink", dockerfile: "FROM busybox\nCOPY . /ctx/\n", symlinks: map[string]string{".dockerignore": filepath.Join(g.outside, "canary.txt")}, want: either},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range ctxFiles {
				files[k] = v
			}
			for k, v := range c.files {
				files[k] = v
			}
			if c.dockerfile != "" {
				files["Dockerfile"] = c.dockerfile
			}
			ctx := g.ctxDir(t, files)
			for name, target := range c.symlinks {
				os.Remove(filepath.Join(ctx, name))
				if err := os.Symlink(target, filepath.Join(ctx, name)); err != nil {
					t.Fatal(err)
				}
			}
			out := "out-ctx-" + c.name
			r := strataRun(t, g.store, runOpts{}, "build", "--progress", "plain", "-t", out, ctx)
			g.judge(t, r, c.want, c.words)
			if r.Code == 0 && c.check != nil {
				c.check(t, imageFiles(t, g.store, "docker.io/library/"+out+":latest"))
			}
		})
	}
	g.requireNoCanary(t)
	requireFsckClean(t, g.store)
}

func filter(s []string, sub string) []string {
	var out []string
	for _, x := range s {
		if strings.Contains(x, sub) {
			out = append(out, x)
		}
	}
	return out
}
