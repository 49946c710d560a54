// Package testsuite is the test suite every snapshot.Snapshotter passes, in
// the spirit of containerd's snapshots/testsuite: the parents are real layer
// directories (fixture tars unpacked by layer.Apply, as the store unpacks
// layers), every snapshot and view must show their union (checked against
// the same tars applied flat with layer.ApplyFlat), and every scenario's diff
// must give the expected layer tar (layer.WriteDiff), so that implementations
// that pass give the same layers for the same changes. Cleanup is checked
// throughout: no folder and no mount is left behind, after errors too, and
// what a killed process left is reclaimed by the store's session recovery.
//
// The suite needs root (mounts, devices, owners, trusted xattrs).
package testsuite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/store"
)

// New makes the snapshotter under test, working below dir (an existing,
// empty directory, which the suite checks is empty and has no mounts once
// everything made in it is removed).
type New func(t *testing.T, dir string) snapshot.Snapshotter

// Run runs the suite against the snapshotters newFn makes.
func Run(t *testing.T, newFn New) {
	if os.Geteuid() != 0 {
		t.Skip("the snapshot suite needs root (mounts, devices, owners); run the tests as root")
	}
	if os.Getenv(childEnv) != "" {
		runChild(t, newFn) // a process started by the Killed test
		return
	}
	t.Run("Scenarios", func(t *testing.T) {
		for _, sc := range scenarios() {
			t.Run(sc.name, func(t *testing.T) { runScenario(t, newFn, sc) })
		}
	})
	t.Run("Union", func(t *testing.T) { testUnion(t, newFn) })
	t.Run("Views", func(t *testing.T) { testViews(t, newFn) })
	t.Run("ManyParents", func(t *testing.T) { testManyParents(t, newFn) })
	t.Run("NoParents", func(t *testing.T) { testNoParents(t, newFn) })
	t.Run("UpperAfterSeal", func(t *testing.T) { testUpperAfterSeal(t, newFn) })
	t.Run("SparseFiles", func(t *testing.T) { testSparseFiles(t, newFn) })
	t.Run("RemoveAlways", func(t *testing.T) { testRemoveAlways(t, newFn) })
	t.Run("Killed", func(t *testing.T) { testKilled(t, newFn) })
}

// DiffIDs runs every scenario with the snapshotters newFn makes and returns
// the diffID of each one's layer (times clamped to the suite's epoch), by
// scenario name: implementations that agree give the same map.
func DiffIDs(t *testing.T, newFn New) map[string]string {
	if os.Geteuid() != 0 {
		t.Skip("the snapshot suite needs root; run the tests as root")
	}
	ids := map[string]string{}
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) { ids[sc.name] = runScenario(t, newFn, sc) })
	}
	return ids
}

// env is one test's snapshotter and folders.
type env struct {
	s      snapshot.Snapshotter
	dir    string // the snapshotter's
	layers string // fixture layers go below it
	tmp    string
}

func setup(t *testing.T, newFn New) *env {
	t.Helper()
	tmp := t.TempDir()
	e := &env{dir: filepath.Join(tmp, "snapshots"), layers: filepath.Join(tmp, "layers"), tmp: tmp}
	must(t, os.Mkdir(e.dir, 0o700))
	e.s = newFn(t, e.dir)
	t.Cleanup(func() { checkClean(t, e.dir) })
	return e
}

// checkClean fails the test when anything is left in dir: a folder or a
// mount (which it then detaches, so that the test's folders can go).
func checkClean(t testing.TB, dir string) {
	t.Helper()
	if mps := store.MountsUnder(dir); len(mps) > 0 {
		t.Errorf("mounts left below %s: %q", dir, mps)
		for _, m := range slices.Backward(mps) {
			detach(m)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Errorf("read %s: %v", dir, err)
		return
	}
	for _, e := range ents {
		t.Errorf("left in %s: %s", dir, e.Name())
	}
}

var ctx = context.Background()

func runScenario(t *testing.T, newFn New, sc scenario) string {
	e := setup(t, newFn)
	parents := makeLayers(t, e.layers, base())
	before := listTree(t, e.layers)
	sn, err := e.s.Prepare(ctx, parents)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer sn.Remove()
	sc.change(t, sn.Root())
	must(t, sn.Seal())
	diff, err := sn.Diff(ctx)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	got, id := listDiff(t, diff)
	if !slices.Equal(got, sc.want) {
		t.Errorf("diff layer:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(sc.want, "\n  "))
	}
	if err := sn.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	checkClean(t, e.dir)
	if after := listTree(t, e.layers); !slices.Equal(before, after) {
		t.Errorf("the parents changed:\n%s", lineDiff(before, after))
	}
	return id
}

// testUnion checks that a snapshot shows the union of its parents, with
// every kind of entry and its metadata, names linked in a layer still
// linked, whiteouts and opaque directories applied.
func testUnion(t *testing.T, newFn New) {
	e := setup(t, newFn)
	parents := makeLayers(t, e.layers, base())
	flat := filepath.Join(e.tmp, "flat")
	flatten(t, flat, base())
	want := listTree(t, flat)
	sn, err := e.s.Prepare(ctx, parents)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer sn.Remove()
	if got := listTree(t, sn.Root()); !slices.Equal(got, want) {
		t.Errorf("snapshot is not the union of its parents:\n%s", lineDiff(want, got))
	}
	fi, err := os.Stat(sn.Root())
	must(t, err)
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("root mode %v, want 0755", fi.Mode().Perm())
	}
	must(t, sn.Remove())
	checkClean(t, e.dir)
}

// testViews checks views of none, one and two parents, and that removing
// them leaves the parents as they were.
func testViews(t *testing.T, newFn New) {
	e := setup(t, newFn)
	layers := base()
	parents := makeLayers(t, e.layers, layers)
	before := listTree(t, e.layers)
	for n := 0; n <= len(layers); n++ {
		t.Run(fmt.Sprint(n, "Parents"), func(t *testing.T) {
			flat := filepath.Join(e.tmp, fmt.Sprint("flat-", n))
			flatten(t, flat, layers[:n])
			v, err := e.s.View(ctx, parents[:n])
			if err != nil {
				t.Fatalf("View: %v", err)
			}
			if got, want := listTree(t, v.Root()), listTree(t, flat); !slices.Equal(got, want) {
				t.Errorf("view is not the union of its parents:\n%s", lineDiff(want, got))
			}
			must(t, v.Remove())
			must(t, v.Remove())
			checkClean(t, e.dir)
		})
	}
	// two views of the same parents at once, and a duplicate parent
	v1, err := e.s.View(ctx, parents)
	must(t, err)
	v2, err := e.s.View(ctx, append([]string{parents[1]}, parents...))
	must(t, err)
	if a, b := listTree(t, v1.Root()), listTree(t, v2.Root()); !slices.Equal(a, b) {
		t.Errorf("a duplicate parent changed the view:\n%s", lineDiff(a, b))
	}
	must(t, v1.Remove())
	must(t, v2.Remove())
	checkClean(t, e.dir)
	if after := listTree(t, e.layers); !slices.Equal(before, after) {
		t.Errorf("the parents changed:\n%s", lineDiff(before, after))
	}
}

// testManyParents stacks 130 layers (more than overlayfs' legacy mount
// option string holds for such paths), as containerd's 128LayersMount.
func testManyParents(t *testing.T, newFn New) {
	e := setup(t, newFn)
	layers := [][]entry{{
		file("bottom", "way at the bottom\n"),
		file("overwriteme", "FIRST!\n"),
		dir("addhere"),
		file("onlyme/bottom", "bye!\n"),
	}}
	for i := 1; i < 130; i++ {
		layers = append(layers, []entry{
			file("overwriteme", fmt.Sprintf("%d WAS HERE!\n", i)),
			file(fmt.Sprintf("addhere/file-%d", i), "same\n"),
			dir("onlyme"), opaque("onlyme"),
			file(fmt.Sprintf("onlyme/file-%d", i), "only me!\n"),
		})
	}
	// long layer paths, so that their lowerdir= list is well over a page
	e.layers = filepath.Join(e.layers, strings.Repeat("long-layer-path-", 4))
	parents := makeLayers(t, e.layers, layers)
	flat := filepath.Join(e.tmp, "flat")
	flatten(t, flat, layers)
	want := listTree(t, flat)

	sn, err := e.s.Prepare(ctx, parents)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer sn.Remove()
	if got := listTree(t, sn.Root()); !slices.Equal(got, want) {
		t.Errorf("snapshot of 130 parents:\n%s", lineDiff(want, got))
	}
	write(t, sn.Root(), "top", "t")
	remove(t, sn.Root(), "onlyme/file-129")
	diff, err := sn.Diff(ctx)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	got, _ := listDiff(t, diff)
	if w := []string{`onlyme/ dir 755 0:0 now`, `onlyme/.wh.file-129`, `top file 644 0:0 now "t"`}; !slices.Equal(got, w) {
		t.Errorf("diff layer:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(w, "\n  "))
	}
	must(t, sn.Remove())

	v, err := e.s.View(ctx, parents)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	if got := listTree(t, v.Root()); !slices.Equal(got, want) {
		t.Errorf("view of 130 parents:\n%s", lineDiff(want, got))
	}
	must(t, v.Remove())
	checkClean(t, e.dir)
}

// testNoParents: a snapshot on nothing is the whole filesystem; its root is
// its upper directory (written directly) and all of it is the diff.
func testNoParents(t *testing.T, newFn New) {
	e := setup(t, newFn)
	sn, err := e.s.Prepare(ctx, nil)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer sn.Remove()
	if sn.Root() != sn.Upper() {
		t.Errorf("Root %s and Upper %s differ without parents", sn.Root(), sn.Upper())
	}
	if got := listTree(t, sn.Root()); len(got) != 0 {
		t.Errorf("new snapshot on nothing is not empty: %q", got)
	}
	mkdir(t, sn.Root(), "d")
	write(t, sn.Root(), "d/f", "f")
	must(t, os.Symlink("d/f", filepath.Join(sn.Root(), "l")))
	must(t, sn.Seal())
	diff, err := sn.Diff(ctx)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	got, _ := listDiff(t, diff)
	if w := []string{`d/ dir 755 0:0 now`, `d/f file 644 0:0 now "f"`, `l symlink 777 0:0 now -> d/f`}; !slices.Equal(got, w) {
		t.Errorf("diff layer:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(w, "\n  "))
	}
	must(t, sn.Remove())
	checkClean(t, e.dir)
}

// testUpperAfterSeal is what the copy engine does through an overlay: write
// a placeholder through Root, Seal, then replace it directly in Upper; the
// diff has what was written last.
func testUpperAfterSeal(t *testing.T, newFn New) {
	e := setup(t, newFn)
	parents := makeLayers(t, e.layers, base())
	sn, err := e.s.Prepare(ctx, parents)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer sn.Remove()
	write(t, sn.Root(), "etc/placeholder", "")
	must(t, sn.Seal())
	must(t, sn.Seal())
	p := filepath.Join(sn.Upper(), "etc/placeholder")
	must(t, os.Remove(p))
	write(t, sn.Upper(), "etc/placeholder", "late")
	diff, err := sn.Diff(ctx)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	got, _ := listDiff(t, diff)
	if w := []string{`etc/ dir 755 0:0 now`, `etc/placeholder file 644 0:0 now "late"`}; !slices.Equal(got, w) {
		t.Errorf("diff layer:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(w, "\n  "))
	}
	must(t, sn.Remove())
	checkClean(t, e.dir)
}

// testSparseFiles: a sparse file of a parent stays sparse in a snapshot and
// a view, and when changed, in the diff (overlayfs copies holes up as holes).
func testSparseFiles(t *testing.T, newFn New) {
	e := setup(t, newFn)
	const size = 64 << 20
	layers := [][]entry{{file("sparse", strings.Repeat("\x00", size-1)+"x")}}
	parents := makeLayers(t, e.layers, append(layers, []entry{file("other", "o")}))
	sparse := func(what, p string) {
		t.Helper()
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		if st.Size != size || st.Blocks*512 > size/4 {
			t.Errorf("%s: size %d, %d bytes on disk: want %d bytes, holes kept", what, st.Size, st.Blocks*512, size)
		}
	}
	sparse("parent", filepath.Join(parents[0], "sparse"))
	sn, err := e.s.Prepare(ctx, parents)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer sn.Remove()
	sparse("snapshot", filepath.Join(sn.Root(), "sparse"))
	f, err := os.OpenFile(filepath.Join(sn.Root(), "sparse"), os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("y"), size-1)
	must(t, err)
	must(t, f.Close())
	diff, err := sn.Diff(ctx)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	sparse("diff", filepath.Join(diff, "sparse"))
	must(t, sn.Remove())
	v, err := e.s.View(ctx, parents)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	sparse("view", filepath.Join(v.Root(), "sparse"))
	must(t, v.Remove())
	checkClean(t, e.dir)
}

// testRemoveAlways: failed calls leave nothing, Remove works in every state
// and more than once, also while a file below the root is open, and a diff
// moved away survives it.
func testRemoveAlways(t *testing.T, newFn New) {
	e := setup(t, newFn)
	parents := makeLayers(t, e.layers, base())
	missing := filepath.Join(e.tmp, "missing")
	aFile := filepath.Join(parents[0], "f")

	for name, ps := range map[string][]string{"missing parent": {parents[0], missing}, "file parent": {parents[0], aFile}} {
		if sn, err := e.s.Prepare(ctx, ps); err == nil {
			t.Errorf("Prepare with a %s succeeded", name)
			sn.Remove()
		}
		checkClean(t, e.dir)
		if v, err := e.s.View(ctx, ps); err == nil {
			t.Errorf("View with a %s succeeded", name)
			v.Remove()
		}
		checkClean(t, e.dir)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if sn, err := e.s.Prepare(canceled, parents); err == nil {
		t.Error("Prepare with a canceled context succeeded")
		sn.Remove()
	}
	checkClean(t, e.dir)

	// Remove right after Prepare, twice; after Seal; with an open file
	for _, step := range []string{"prepared", "sealed", "busy"} {
		sn, err := e.s.Prepare(ctx, parents)
		if err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		var f *os.File
		switch step {
		case "sealed":
			must(t, sn.Seal())
		case "busy":
			f, err = os.Open(filepath.Join(sn.Root(), "etc/passwd"))
			must(t, err)
		}
		if err := sn.Remove(); err != nil {
			t.Errorf("Remove (%s): %v", step, err)
		}
		if err := sn.Remove(); err != nil {
			t.Errorf("second Remove (%s): %v", step, err)
		}
		if f != nil {
			f.Close()
		}
		checkClean(t, e.dir)
	}

	// a diff moved away (as the store adopts it) outlives Remove
	sn, err := e.s.Prepare(ctx, parents)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	write(t, sn.Root(), "kept", "k")
	diff, err := sn.Diff(ctx)
	if err != nil {
		sn.Remove()
		t.Fatalf("Diff: %v", err)
	}
	adopted := filepath.Join(e.tmp, "adopted")
	if err := os.Rename(diff, adopted); err != nil {
		sn.Remove()
		t.Fatal(err)
	}
	must(t, sn.Remove())
	checkClean(t, e.dir)
	if got, _ := listDiff(t, adopted); !slices.Equal(got, []string{`kept file 644 0:0 now "k"`}) {
		t.Errorf("moved diff after Remove: %q", got)
	}
}

// lineDiff shows the lines only in want (-) and only in got (+).
func lineDiff(want, got []string) string {
	var b strings.Builder
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "  - %s\n", l)
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "  + %s\n", l)
		}
	}
	return b.String()
}
