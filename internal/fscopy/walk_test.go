package fscopy

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
)

// TestWalkIsWhatCopyWrites: for random trees, .dockerignore rules and
// --exclude patterns, the paths Walk visits below a directory item are
// exactly the paths Copy writes, with the same types, and Walk visits them
// in the order Copy writes them (parents first). A cache key made from Walk
// therefore counts exactly the files the copy reads.
func TestWalkIsWhatCopyWrites(t *testing.T) {
	rnd := rand.New(rand.NewSource(15))
	for n := range 150 {
		src := t.TempDir()
		testtree.Random(t, rnd, src, true)
		ignore, exclude := testtree.Patterns(rnd), testtree.Patterns(rnd)
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
			copied := testtree.List(t, rootfs)
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
	testtree.Make(t, src, "d/f", "tod->d", "dangling->nowhere", "file")
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
