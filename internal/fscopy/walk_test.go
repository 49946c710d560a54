package fscopy

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-build/strata/internal/buildctx"
)

// randomTree fills dir with a random tree of directories, files, symlinks
// and fifos named from a few names, so that random patterns match some.
func randomTree(t *testing.T, rnd *rand.Rand, dir string, depth int) {
	t.Helper()
	for _, name := range []string{"a", "b", "c.txt", "d.log", "keep"} {
		p := filepath.Join(dir, name)
		var err error
		switch r := rnd.Intn(7); {
		case r < 2 && depth < 3:
			if err = os.Mkdir(p, 0o755); err == nil {
				randomTree(t, rnd, p, depth+1)
			}
		case r < 4:
			err = os.WriteFile(p, []byte(p), 0o644)
		case r == 4:
			err = os.Symlink("a", p)
		case r == 5 && depth > 0:
			err = syscall.Mkfifo(p, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// randomPatterns picks some of a set of .dockerignore-like patterns, with
// and without "!" exceptions.
func randomPatterns(rnd *rand.Rand) []string {
	var out []string
	for _, p := range []string{"a", "*.log", "**", "!a/b", "!keep", "b/*", "!*/c.txt", "c.txt", "**/keep", "!b", "a/**", "!**/d.log", "*/a", "!a/a/keep"} {
		if rnd.Intn(4) == 0 {
			out = append(out, p)
		}
	}
	return out
}

// TestWalkIsWhatCopyWrites: for random trees, .dockerignore rules and
// --exclude patterns, the paths Walk visits below a directory item are
// exactly the paths Copy writes, with the same types, and Walk visits them
// in the order Copy writes them (parents first). A cache key made from Walk
// therefore counts exactly the files the copy reads.
func TestWalkIsWhatCopyWrites(t *testing.T) {
	rnd := rand.New(rand.NewSource(15))
	for n := range 150 {
		src := t.TempDir()
		randomTree(t, rnd, src, 0)
		ignore, exclude := randomPatterns(rnd), randomPatterns(rnd)
		s := source(src)
		if len(ignore) > 0 {
			df := filepath.Join(t.TempDir(), "Dockerfile")
			if err := os.WriteFile(df+".dockerignore", []byte(strings.Join(ignore, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			bctx, err := buildctx.Open(src, df)
			if err != nil {
				t.Fatal(err)
			}
			s.Ignore = bctx
		}
		flt, err := buildctx.NewFilter(exclude)
		if err != nil {
			t.Fatal(err)
		}
		for _, rel := range []string{"/", "/a", "/b", "/a/b"} {
			fi, err := os.Lstat(filepath.Join(src, rel))
			if err != nil || !fi.IsDir() || s.ignored(rel) {
				continue
			}
			it := items(t, s, rel)
			var walked []string
			types := map[string]os.FileMode{}
			err = Walk(context.Background(), it[0], flt, func(e Entry) error {
				if e.Rel != "." {
					walked = append(walked, e.Rel)
					types[e.Rel] = e.Info.Mode().Type()
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			rootfs := t.TempDir()
			if _, err := Copy(context.Background(), Target{Root: rootfs}, it, "/", Options{Exclude: exclude}); err != nil {
				t.Fatal(err)
			}
			copied := listTree(t, rootfs)
			what := fmt.Sprintf("tree %d, item %s, .dockerignore %q, --exclude %q", n, rel, ignore, exclude)
			if !slices.IsSorted(walked) {
				t.Errorf("%s: walk order %q is not parents first in name order", what, walked)
			}
			if !slices.Equal(walked, copied) {
				t.Fatalf("%s:\nwalked %q\ncopied %q", what, walked, copied)
			}
			for _, p := range copied {
				fi, err := os.Lstat(filepath.Join(rootfs, p))
				if err != nil || fi.Mode().Type() != types[p] {
					t.Errorf("%s: %s copied as %v, walked as %v", what, p, fi.Mode().Type(), types[p])
				}
			}
		}
	}
}

// TestWalkItem: the item itself is visited first as "."; a symlink item is
// followed when it leads somewhere, visited as itself when it does not.
func TestWalkItem(t *testing.T) {
	src := t.TempDir()
	mkfiles(t, src, "d/f", "tod->d", "dangling->nowhere", "file")
	s := source(src)
	for _, tt := range []struct {
		rel  string
		want string
	}{
		{"/d", ".:d f:-"},
		{"/tod", ".:d f:-"},
		{"/dangling", ".:L"},
		{"/file", ".:-"},
	} {
		var got []string
		err := Walk(context.Background(), items(t, s, tt.rel)[0], nil, func(e Entry) error {
			got = append(got, e.Rel+":"+e.Info.Mode().Type().String()[:1])
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("Walk(%s) = %q, want %q", tt.rel, strings.Join(got, " "), tt.want)
		}
	}
	stop := fmt.Errorf("stop")
	if err := Walk(context.Background(), items(t, s, "/d")[0], nil, func(e Entry) error {
		if e.Rel == "f" {
			return stop
		}
		return nil
	}); err != stop {
		t.Errorf("an error of fn: Walk returned %v", err)
	}
}
