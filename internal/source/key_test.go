package source

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/buildctx"
)

// TestItemSumUnchanged pins the checksums of COPY sources (the content part
// of a COPY's cache key) for a fixed context: they were computed by the
// walk before it moved into fscopy (and this package), and must stay as
// they are, or every cached COPY misses (or, with a bumped copyRules in the
// builder, the change is meant).
func TestItemSumUnchanged(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"src/a.go", "src/a_test.go", "src/vendor/x/LICENSE", "src/vendor/x/x.go", "src/empty/", "docs/r.md", "build/out", "top.txt", "link->src/a.go"} {
		p := filepath.Join(dir, f)
		var err error
		switch name, to, ok := strings.Cut(f, "->"); {
		case ok:
			err = os.Symlink(to, filepath.Join(dir, name))
		case strings.HasSuffix(f, "/"):
			err = os.MkdirAll(p, 0o755)
		default:
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.WriteFile(p, []byte("content of "+f), 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("build\n**/*_test.go\nsrc/vendor\n!src/vendor/**/LICENSE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// modes as the sums were made with, whatever the umask
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		switch {
		case err != nil:
			return err
		case fi.IsDir():
			return os.Chmod(p, 0o755)
		case fi.Mode().IsRegular():
			return os.Chmod(p, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bctx, err := buildctx.Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	cs := Context(bctx, nil)
	for _, tc := range []struct {
		src     string
		exclude []string
		want    string
	}{
		{".", nil, "4cffd27a4956270bfe2826bae30d283b3a9016d7bf57499c3b53922b5dfd2672"},
		{"src", nil, "f8853a27d83d0299f5ec3c30425896ac8001bab6664d2d55a87b88563f4ef59a"},
		{".", []string{"docs", "!docs/r.md"}, "4cffd27a4956270bfe2826bae30d283b3a9016d7bf57499c3b53922b5dfd2672"},
		{"src", []string{"**/*.go"}, "acadeba62eac066466393d6686c40d93190860c6344a80a16e69c2fb8888d616"},
		{"link", nil, "ceed6abf2eecaa3135c1ab9a15fc308b0d5812f0bb10e21ddd4f09313129837e"},
		{"src", []string{"*", "!vendor/x"}, "1c8bbf4411da78784f83a95d6bc163a283fd4dcf7677d9193fb7f470b27d8426"},
	} {
		it, err := cs.Stat(path.Clean("/" + tc.src))
		if err != nil {
			t.Fatal(err)
		}
		got, err := it.Sum(context.Background(), tc.exclude)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("COPY %s --exclude=%q: sum %s, want %s", tc.src, tc.exclude, got, tc.want)
		}
	}
}
