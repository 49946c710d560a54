package reliability

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/test/internal/testenv"
)

type (
	result  = testenv.Result
	runOpts = testenv.RunOpts
)

// strataRun runs strata in store and returns what happened, whatever it was.
func strataRun(t testing.TB, store string, o runOpts, args ...string) result {
	t.Helper()
	return suite.Run(store, o, args...)
}

// strata runs strata and fails the test unless it exits 0.
func strata(t testing.TB, store string, args ...string) result {
	t.Helper()
	return suite.MustRun(t, store, runOpts{}, args...)
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

// ---- reading the store directly ----

// storeImages reads index.json: name → manifest digest. A store whose
// index.json cannot be read is a corruption.
func storeImages(t testing.TB, store string) map[string]string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(store, "index.json")); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	imgs, err := testenv.StoreIndex(store)
	if err != nil {
		corruptions.Add(1)
		t.Fatalf("index.json is not valid (corruption): %v", err)
	}
	return imgs
}

// imageIssues checks a tagged image is whole: its manifest, config and
// layer blobs are present and verify, and the diffIDs match the layer count.
func imageIssues(store, manifestDigest string) []string {
	m, err := testenv.StoreManifest(store, manifestDigest)
	if err != nil {
		return []string{"manifest: " + err.Error()}
	}
	var out []string
	c, err := testenv.StoreConfig(store, m)
	if err != nil {
		return []string{"config: " + err.Error()}
	}
	if len(c.RootFS.DiffIDs) != len(m.Layers) {
		out = append(out, fmt.Sprintf("%d layers, %d diffIDs", len(m.Layers), len(c.RootFS.DiffIDs)))
	}
	for _, l := range m.Layers {
		if _, err := testenv.ReadBlob(store, l.Digest.String()); err != nil {
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
	for _, l := range strings.Split(r.Stdout, "\n") {
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
	if r.Code == 0 && len(ps) == 0 {
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
	if len(other) > 0 || r.Code != 1 || r.Err != nil {
		corruptions.Add(int64(max(1, len(other))))
		t.Fatalf("CORRUPTION: strata fsck found problems:\n%s", r)
	}
	tempLeftovers.Add(int64(tolerated["temp"]))
	orphanContainers.Add(int64(tolerated["container"]))
	t.Logf("fsck: leftovers of the killed process the next command did not remove: %v (known bugs: see TestBug*)", tolerated)
	rr, _ := runFsck(t, store, "--repair")
	if rr.Code != 0 {
		t.Fatalf("strata fsck --repair did not repair the leftovers:\n%s", rr)
	}
	if r2, ps2 := runFsck(t, store); r2.Code != 0 || len(ps2) > 0 {
		t.Fatalf("strata fsck after --repair is not clean:\n%s", r2)
	}
}

// requireNoLeftovers fails when strata left mounts, containers or sessions.
func requireNoLeftovers(t testing.TB, store, when string) {
	t.Helper()
	if left := testenv.Leftovers(store); len(left) > 0 {
		t.Errorf("%s: left behind: %q", when, left)
		testenv.Release(store)
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
	m, err := testenv.StoreManifest(store, d)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]fileEntry{}
	for _, l := range m.Layers {
		b, err := testenv.ReadBlob(store, l.Digest.String())
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
