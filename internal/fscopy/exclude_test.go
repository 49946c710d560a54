package fscopy

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestCopyExcludeExceptions: COPY --exclude with "!" exceptions keeps what
// BuildKit v0.34.2 keeps (fsutil's copy): paths are matched with their
// parents' results, and an excluded directory is copied, with its own mode,
// only when something below it is kept. Each want is what BuildKit built
// from the same tree (issue 13).
func TestCopyExcludeExceptions(t *testing.T) {
	src := t.TempDir()
	for _, f := range []string{"src/dir/sub/f", "src/dir/other/o", "src/top"} {
		p := filepath.Join(src, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "src", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "src", "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		exclude []string
		want    string
	}{
		// dir is kept for dir/sub, dir/other and empty are not
		{[]string{"**", "!dir/sub"}, "dir dir/sub dir/sub/f"},
		// "!dir" is skipped for dir (nothing excluded it yet), so it does
		// not re-include dir/sub
		{[]string{"dir/sub", "!dir"}, "dir dir/other dir/other/o empty top"},
		{[]string{"*", "!*/sub/f"}, "dir dir/sub dir/sub/f"},
	} {
		t.Run(strings.Join(tc.exclude, " "), func(t *testing.T) {
			rootfs := t.TempDir()
			if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, source(src), "/src"), "/x/", Options{Exclude: tc.exclude}); err != nil {
				t.Fatalf("Copy: %v", err)
			}
			var got []string
			filepath.Walk(filepath.Join(rootfs, "x"), func(p string, fi os.FileInfo, err error) error {
				if rel, _ := filepath.Rel(filepath.Join(rootfs, "x"), p); err == nil && rel != "." {
					got = append(got, filepath.ToSlash(rel))
				}
				return err
			})
			sort.Strings(got)
			if strings.Join(got, " ") != tc.want {
				t.Errorf("copied %q, want %q", strings.Join(got, " "), tc.want)
			}
			if fi, err := os.Stat(filepath.Join(rootfs, "x", "dir")); err == nil && fi.Mode().Perm() != 0o700 {
				t.Errorf("dir kept with mode %v, want its own 0700", fi.Mode().Perm())
			}
		})
	}
}
