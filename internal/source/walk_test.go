package source

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/testtree"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/fscopy"
)

// walked lists the entries Walk visits for it.
func walked(ctx context.Context, it Item, exclude []string) ([]fscopy.Entry, error) {
	var entries []fscopy.Entry
	err := it.Walk(ctx, exclude, func(e fscopy.Entry) error {
		entries = append(entries, e)
		return nil
	})
	return entries, err
}

// TestCopyAndKeyReadTheSameFiles: for random build contexts, .dockerignore
// rules and --exclude patterns, the entries a COPY's cache key hashes
// (Walk, as Sum hashes them) are exactly the paths the COPY writes, and
// for the whole context without --exclude exactly what the filtered
// context of RUN --mount shows (Mirror): the three walk alike,
// so a cache hit cannot stand for other files than the step would copy.
func TestCopyAndKeyReadTheSameFiles(t *testing.T) {
	rnd := rand.New(rand.NewSource(15))
	ctx := context.Background()
	for n := range 60 {
		dir := t.TempDir()
		testtree.Random(t, rnd, dir, false)
		ignore, exclude := testtree.Patterns(rnd), testtree.Patterns(rnd)
		df := filepath.Join(t.TempDir(), "Dockerfile")
		if err := os.WriteFile(df+".dockerignore", []byte(strings.Join(ignore, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		bctx, err := buildctx.Open(dir, df)
		if err != nil {
			t.Fatal(err)
		}
		cs := Context(bctx, nil)
		what := fmt.Sprintf("context %d, .dockerignore %q, --exclude %q", n, ignore, exclude)
		for _, src := range []string{".", "a", "b", "a/b"} {
			items, err := cs.Match([]string{src}, false)
			if err != nil || !items[0].Info.IsDir() {
				continue // excluded, missing or not a directory
			}
			entries, err := walked(ctx, items[0], exclude)
			if err != nil {
				t.Fatal(err)
			}
			var keyed []string
			for _, e := range entries[1:] {
				keyed = append(keyed, e.Rel)
			}
			rootfs := t.TempDir()
			if _, err := fscopy.Copy(ctx, fscopy.Target{Root: rootfs}, []fscopy.Item{items[0].Fscopy(false)}, "/", fscopy.Options{Exclude: exclude}); err != nil {
				t.Fatal(err)
			}
			if copied := testtree.List(t, rootfs); !slices.Equal(keyed, copied) {
				t.Fatalf("%s, COPY %s: the key hashes %q, the copy wrote %q", what, src, keyed, copied)
			}
		}
		items, err := cs.Match([]string{"."}, false)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := walked(ctx, items[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		var keyed []string
		for _, e := range entries[1:] {
			keyed = append(keyed, e.Rel)
		}
		linked := t.TempDir()
		if err := cs.Mirror(ctx, linked); err != nil {
			t.Fatal(err)
		}
		if shown := testtree.List(t, linked); !slices.Equal(keyed, shown) {
			t.Fatalf("%s: the key of the context hashes %q, RUN --mount shows %q", what, keyed, shown)
		}
	}
}

// TestMirror: the filtered context of RUN --mount links the files the
// rules keep, recreates symlinks, and gives directories their modes.
func TestMirror(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"keep/f", "keep/sub/g", "drop/h", "x.log"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("keep/f", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "keep/sub"), 0o500); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("drop\n*.log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bctx, err := buildctx.Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := Context(bctx, nil).Mirror(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(testtree.List(t, out), " "), ".dockerignore keep keep/f keep/sub keep/sub/g link"; got != want {
		t.Errorf("linked %q, want %q", got, want)
	}
	if fi, err := os.Stat(filepath.Join(out, "keep/sub")); err != nil || fi.Mode().Perm() != 0o500 {
		t.Errorf("keep/sub: %v %v, want mode 0500", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(out, "link")); err != nil || l != "keep/f" {
		t.Errorf("link: %q %v", l, err)
	}
	a, _ := os.Stat(filepath.Join(dir, "keep/f"))
	b, _ := os.Stat(filepath.Join(out, "keep/f"))
	if !os.SameFile(a, b) {
		t.Error("keep/f was copied, not linked")
	}
}
