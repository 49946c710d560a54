package source

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/buildctx"
)

// testContext is a build context with .dockerignore rules.
func testContext(t *testing.T) *Source {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, "src/main.go", "src/util/u.go", "src/util/deep/d.go", "docs/readme.md", "secret.key", "build/out.bin", "link->src/main.go", "out->../outside", "Makefile")
	if err := os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("*.key\nbuild\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bctx, err := buildctx.Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return Context(bctx, nil)
}

func rels(items []Item) string {
	var out []string
	for _, it := range items {
		s := it.Rel
		if it.Keep != "" {
			s += "=" + it.Keep
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestMatch(t *testing.T) {
	src := testContext(t)
	for _, tc := range []struct {
		patterns []string
		parents  bool
		want     string
	}{
		{[]string{"src"}, false, "/src"},
		{[]string{"./src/main.go"}, false, "/src/main.go"},
		{[]string{"src/*.go"}, false, "/src/main.go"},
		{[]string{"src/**/*.go"}, false, "/src/main.go /src/util/deep/d.go /src/util/u.go"},
		{[]string{"**/d.go"}, false, "/src/util/deep/d.go"},
		// out is a dangling symlink: no match
		{[]string{"*"}, false, "/.dockerignore /Makefile /docs /link /src"},
		{[]string{"s?c/u*/"}, false, "/src/util"},
		{[]string{"[dM]*"}, false, "/Makefile /docs"},
		{[]string{"nomatch*", "docs"}, false, "/docs"},
		{[]string{"src/./util/u.go", "docs/readme.md"}, true, "/src/util/u.go=util/u.go /docs/readme.md=docs/readme.md"},
		{[]string{"src/./util/*.go"}, true, "/src/util/u.go=util/u.go"},
	} {
		items, err := src.Match(tc.patterns, tc.parents)
		if err != nil {
			t.Errorf("Match(%q): %v", tc.patterns, err)
			continue
		}
		if got := rels(items); got != tc.want {
			t.Errorf("Match(%q, parents %v) = %q, want %q", tc.patterns, tc.parents, got, tc.want)
		}
		for _, it := range items {
			if it.Source != src || it.Info == nil || !strings.HasPrefix(it.Host, src.Root()) {
				t.Errorf("Match(%q): item %+v", tc.patterns, it)
			}
		}
	}
}

// TestMatchErrors: the messages of missing sources (pinned by the
// conformance and e2e tests of COPY) with their hints.
func TestMatchErrors(t *testing.T) {
	src := testContext(t)
	for _, tc := range []struct {
		patterns []string
		want     string
	}{
		{[]string{"secret.key"}, `COPY source not found in build context: "secret.key" not found; it is excluded by .dockerignore line 1 ("*.key")`},
		{[]string{"build/out.bin"}, `COPY source not found in build context: "build/out.bin" not found; it is excluded by .dockerignore line 2 ("build")`},
		{[]string{"./src/mian.go"}, `COPY source not found in build context: "src/mian.go" not found; did you mean "src/main.go"?`},
		{[]string{"makefile"}, `COPY source not found in build context: "makefile" not found; did you mean "Makefile"?`},
		{[]string{"zzz"}, `COPY source not found in build context: "zzz" not found`},
		{[]string{"nothing/here"}, `COPY source not found in build context: "nothing/here" not found`},
		{[]string{"*.txt", "x*"}, `COPY source not found in build context: no source files were specified: nothing matches "*.txt", "x*"`},
		{[]string{"*.key"}, `COPY source not found in build context: no source files were specified: nothing matches "*.key"`},
		{nil, `no source files were specified`},
		{[]string{"src/[.go"}, `bad pattern "/src/[.go": syntax error in pattern`},
	} {
		_, err := src.Match(tc.patterns, false)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Match(%q): error %v, want %q", tc.patterns, err, tc.want)
		}
	}
	named := Dir(src.Root(), "stage builder")
	_, err := named.Match([]string{"zzz"}, false)
	if want := `COPY source not found in stage builder: "zzz" not found`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	// without rules, the file is there
	if _, err := named.Match([]string{"secret.key"}, false); err != nil {
		t.Error(err)
	}
}

// TestStat: symlinks are followed inside the root, and an ignored path
// reached through a symlink does not exist.
func TestStat(t *testing.T) {
	src := testContext(t)
	it, err := src.Stat("/link")
	if err != nil || !it.Info.Mode().IsRegular() || it.Host != filepath.Join(src.Root(), "src/main.go") || it.Rel != "/link" {
		t.Errorf("link: %+v %v", it, err)
	}
	if err := os.Symlink("secret.key", filepath.Join(src.Root(), "k")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/src", filepath.Join(src.Root(), "abs")); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Stat("/k/"); err == nil {
		t.Error("an ignored file through a symlink exists")
	}
	it, err = src.Stat("/abs/main.go")
	if err != nil || it.Host != filepath.Join(src.Root(), "src/main.go") {
		t.Errorf("through an absolute symlink: %+v %v", it, err)
	}
}

// TestSumOwners: a source that keeps owners counts them in the key; the
// build context (owners become root) does not.
func TestSumOwners(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeTree(t, dir, "d/f")
	sum := func(src *Source) string {
		it, err := src.Stat("/d")
		if err != nil {
			t.Fatal(err)
		}
		s, err := it.Sum(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	kept, plain := Extracted(dir, "image", ""), Dir(dir, "dir")
	k1, p1 := sum(kept), sum(plain)
	if err := os.Lchown(filepath.Join(dir, "d/f"), 123, 456); err != nil {
		t.Skip("cannot chown:", err)
	}
	if k2 := sum(kept); k2 == k1 {
		t.Error("an owner change does not change the key of a source that keeps owners")
	}
	if p2 := sum(plain); p2 != p1 {
		t.Error("an owner change changes the key of a source whose files become root's")
	}
	if err := os.WriteFile(filepath.Join(dir, "d/f"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p3 := sum(plain); p3 == p1 {
		t.Error("a content change does not change the key")
	}
	// Key is the sum when the source has no content key
	it, _ := plain.Stat("/d")
	k, err := it.Key(ctx, []string{"f"})
	if err != nil || k == sum(plain) {
		t.Errorf("--exclude does not change the key: %v", err)
	}
}

// TestSumErrors: a walk of a vanished item or a canceled context fails.
func TestSumErrors(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, "d/f", "d/g")
	src := Dir(dir, "dir")
	it, err := src.Stat("/d")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := it.Sum(ctx, nil); err == nil {
		t.Error("a canceled sum succeeded")
	}
	if err := os.RemoveAll(filepath.Join(dir, "d")); err != nil {
		t.Fatal(err)
	}
	if _, err := it.Sum(context.Background(), nil); err == nil {
		t.Error("the sum of a removed directory succeeded")
	}
	if _, err := fileSum(filepath.Join(dir, "nope")); err == nil {
		t.Error("fileSum of a missing file succeeded")
	}
	// invalid --exclude patterns filter nothing (the copy reports them)
	if filter([]string{"["}) != nil {
		t.Error("an invalid pattern compiled")
	}
}

// TestMirrorErrors: a mirror into a missing directory fails.
func TestMirrorErrors(t *testing.T) {
	src := testContext(t)
	if err := src.Mirror(context.Background(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a mirror into a missing directory succeeded")
	}
	if err := Dir(filepath.Join(t.TempDir(), "gone"), "x").Mirror(context.Background(), t.TempDir()); err == nil {
		t.Error("a mirror of a missing directory succeeded")
	}
}
