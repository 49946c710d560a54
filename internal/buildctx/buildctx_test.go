package buildctx

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/testtree"
)

// mkctx creates a context dir with the given files (path → content).
func mkctx(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func open(t *testing.T, dir, dockerfile string) *Context {
	t.Helper()
	c, err := Open(dir, dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestExcluded(t *testing.T) {
	dir := mkctx(t, map[string]string{
		".dockerignore": "# a comment\n\n**/*.log\n!keep.log\nbuild\nnode_modules/\n/abs\n*.tmp\n  spaced  \ndocs/**/draft*\n",
	})
	c := open(t, dir, filepath.Join(dir, "Dockerfile"))
	if c.IgnoreFile != filepath.Join(dir, ".dockerignore") {
		t.Errorf("IgnoreFile = %q", c.IgnoreFile)
	}
	if c.Dir != dir {
		t.Errorf("Dir = %q", c.Dir)
	}
	wantPats := []string{"**/*.log", "!keep.log", "build", "node_modules", "abs", "*.tmp", "spaced", "docs/**/draft*"}
	if !slices.Equal(c.Patterns(), wantPats) {
		t.Errorf("Patterns() = %q, want %q", c.Patterns(), wantPats)
	}
	tests := []struct {
		rel  string
		want bool
	}{
		{"", false},
		{".", false},
		{"a.log", true},
		{"x/y/z.log", true},
		{"logs", false},
		{"a.logx", false},
		{"keep.log", false}, // re-included
		{"sub/keep.log", true},
		{"build", true},
		{"build/out/bin", true}, // below an excluded dir
		{"builder", false},
		{"src/build", false}, // "build" is anchored at the root
		{"node_modules", true},
		{"node_modules/pkg/index.js", true},
		{"abs", true},
		{"x/abs", false},
		{"a.tmp", true},
		{"dir/a.tmp", false}, // * does not cross /
		{"spaced", true},
		{"docs/draft1", true},
		{"docs/a/b/draft2.md", true},
		{"docs/final.md", false},
		{"src/main.go", false},
		{"Dockerfile", false},
	}
	for _, tt := range tests {
		if got := c.Excluded(tt.rel); got != tt.want {
			t.Errorf("Excluded(%q) = %v, want %v", tt.rel, got, tt.want)
		}
	}
}

// TestExcludedTree checks Excluded on real trees against what BuildKit's
// context transfer (fsutil's filtered walk) keeps: directories the rules
// exclude are kept when, and only when, something below them is; paths are
// matched with their parents' results.
func TestExcludedTree(t *testing.T) {
	tests := []struct {
		name   string
		ignore string
		files  []string        // created (a trailing "/" makes an empty directory)
		excl   map[string]bool // rel → Excluded
	}{
		{
			name:   "no exceptions",
			ignore: "build\n*.log\n",
			files:  []string{"build/x", "a.log", "src/a.log"},
			excl:   map[string]bool{"build": true, "build/x": true, "a.log": true, "src": false, "src/a.log": false},
		},
		{
			name:   "everything but a nested directory",
			ignore: "**\n!dir/sub\n",
			files:  []string{"top.txt", "dir/sub/file", "dir/sub/deep/f", "dir/other/x", "dir/y"},
			excl: map[string]bool{
				"top.txt": true, "dir": false, "dir/sub": false, "dir/sub/file": false, "dir/sub/deep/f": false,
				"dir/other": true, "dir/other/x": true, "dir/y": true,
			},
		},
		{
			name:   "everything but a nested file",
			ignore: "*\n!dir/sub/file\n",
			files:  []string{"dir/sub/file", "dir/sub/other", "dir/x"},
			excl:   map[string]bool{"dir": false, "dir/sub": false, "dir/sub/file": false, "dir/sub/other": true, "dir/x": true},
		},
		{
			name:   "an exception that names nothing keeps no parent",
			ignore: "**\n!dir/sub/file\n",
			files:  []string{"dir/sub/", "dir/x"},
			excl:   map[string]bool{"dir": true, "dir/sub": true, "dir/x": true},
		},
		{
			name:   "exception below an exception's exclusion",
			ignore: "**\n!a\na/b\n!a/b/c\n",
			files:  []string{"a/x", "a/b/y", "a/b/c/d", "a/b/e/"},
			excl: map[string]bool{
				"a": false, "a/x": false, "a/b": false, "a/b/y": true, "a/b/c": false, "a/b/c/d": false,
				"a/b/e": true,
			},
		},
		{
			name: "an exception naming a parent does not re-include what is excluded below it",
			// "!a" is skipped for "a" (nothing excluded it yet), so "a/b"
			// keeps "a/b" excluded: matched alone, "a/b" does not match "a".
			ignore: "a/b\n!a\n",
			files:  []string{"a/b/c", "a/d"},
			excl:   map[string]bool{"a": false, "a/d": false, "a/b": true, "a/b/c": true},
		},
		{
			name:   "wildcard exception",
			ignore: "src\n!*/keep\n",
			files:  []string{"src/keep", "src/other", "src/deep/keep"},
			excl:   map[string]bool{"src": false, "src/keep": false, "src/other": true, "src/deep": true, "src/deep/keep": true},
		},
		{
			name:   "** exception",
			ignore: "vendor\n!**/LICENSE\n",
			files:  []string{"vendor/x/LICENSE", "vendor/x/y.go", "vendor/z/y.go"},
			excl:   map[string]bool{"vendor": false, "vendor/x": false, "vendor/x/LICENSE": false, "vendor/x/y.go": true, "vendor/z": true},
		},
		{
			// A path through a symlink is matched by its name; the COPY
			// source check also matches the path it resolves to.
			name:   "a symlink is not walked",
			ignore: "**\n!link/f\n",
			files:  []string{"dir/f", "link->dir"},
			excl:   map[string]bool{"link": true, "dir": true, "dir/f": true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := mkctx(t, map[string]string{".dockerignore": tt.ignore})
			testtree.Make(t, dir, tt.files...)
			c := open(t, dir, "")
			for rel, want := range tt.excl {
				if got := c.Excluded(rel); got != want {
					t.Errorf("Excluded(%q) = %v, want %v", rel, got, want)
				}
			}
		})
	}
}

// TestExcludedWithoutTree: paths that do not exist are matched as files.
func TestExcludedWithoutTree(t *testing.T) {
	c := open(t, mkctx(t, map[string]string{".dockerignore": "build\n!build/keep\na\n!a/b/c\n"}), "")
	for rel, want := range map[string]bool{
		"build": true, "build/keep": false, "build/keep/x": false, "build/other": true,
		"a/b": true, "a/b/c": false, "a/b/d": true, "a/x/c": true,
	} {
		if got := c.Excluded(rel); got != want {
			t.Errorf("Excluded(%q) = %v, want %v", rel, got, want)
		}
	}
}

func TestDockerfileIgnoreTakesPrecedence(t *testing.T) {
	dir := mkctx(t, map[string]string{
		".dockerignore":                   "*.txt\n",
		"sub/app.Dockerfile":              "FROM scratch\n",
		"sub/app.Dockerfile.dockerignore": "*.md\n",
		"other/Dockerfile":                "FROM scratch\n",
		"a.txt":                           "",
		"a.md":                            "",
	})
	// beside the Dockerfile: used instead of DIR/.dockerignore
	c := open(t, dir, filepath.Join(dir, "sub", "app.Dockerfile"))
	if c.IgnoreFile != filepath.Join(dir, "sub", "app.Dockerfile.dockerignore") {
		t.Errorf("IgnoreFile = %q", c.IgnoreFile)
	}
	if !c.Excluded("a.md") || c.Excluded("a.txt") {
		t.Errorf("with app.Dockerfile.dockerignore: a.md %v a.txt %v, want true false", c.Excluded("a.md"), c.Excluded("a.txt"))
	}
	// a Dockerfile outside the context works the same way
	outside := mkctx(t, map[string]string{"Dockerfile": "", "Dockerfile.dockerignore": "a.txt\n"})
	c = open(t, dir, filepath.Join(outside, "Dockerfile"))
	if c.IgnoreFile != filepath.Join(outside, "Dockerfile.dockerignore") || !c.Excluded("a.txt") || c.Excluded("a.md") {
		t.Errorf("outside Dockerfile: IgnoreFile %q", c.IgnoreFile)
	}
	// no NAME.dockerignore: DIR/.dockerignore
	c = open(t, dir, filepath.Join(dir, "other", "Dockerfile"))
	if c.IgnoreFile != filepath.Join(dir, ".dockerignore") || !c.Excluded("a.txt") || c.Excluded("a.md") {
		t.Errorf("fallback: IgnoreFile %q", c.IgnoreFile)
	}
	// DIR/.dockerignore when no Dockerfile path is given
	c = open(t, dir, "")
	if c.IgnoreFile != filepath.Join(dir, ".dockerignore") {
		t.Errorf("no dockerfile: IgnoreFile %q", c.IgnoreFile)
	}
	// an empty NAME.dockerignore still wins (and excludes nothing)
	if err := os.WriteFile(filepath.Join(dir, "other", "Dockerfile.dockerignore"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c = open(t, dir, filepath.Join(dir, "other", "Dockerfile"))
	if c.IgnoreFile != filepath.Join(dir, "other", "Dockerfile.dockerignore") || c.Excluded("a.txt") {
		t.Errorf("empty NAME.dockerignore: IgnoreFile %q, a.txt excluded %v", c.IgnoreFile, c.Excluded("a.txt"))
	}
}

func TestNoIgnoreFile(t *testing.T) {
	dir := mkctx(t, map[string]string{"a.log": ""})
	c := open(t, dir, filepath.Join(dir, "Dockerfile"))
	if c.IgnoreFile != "" || len(c.Patterns()) != 0 {
		t.Errorf("IgnoreFile %q Patterns %q", c.IgnoreFile, c.Patterns())
	}
	if c.Excluded("a.log") {
		t.Error("rules applied without an ignore file")
	}
	var nilCtx *Context
	if nilCtx.Excluded("x") {
		t.Error("nil *Context excludes")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := mkctx(t, map[string]string{"file": ""})
	if _, err := Open(filepath.Join(dir, "missing"), ""); err == nil {
		t.Error("missing dir accepted")
	}
	if _, err := Open(filepath.Join(dir, "file"), ""); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as context: %v", err)
	}
	bad := mkctx(t, map[string]string{".dockerignore": "ok\n[\n"})
	if _, err := Open(bad, ""); err == nil || !strings.Contains(err.Error(), filepath.Join(bad, ".dockerignore")) {
		t.Errorf("bad pattern: %v, want an error naming the file", err)
	}
	dirIgnore := t.TempDir()
	os.Mkdir(filepath.Join(dirIgnore, ".dockerignore"), 0o755)
	if _, err := Open(dirIgnore, ""); err == nil {
		t.Error(".dockerignore that is a directory accepted")
	}
	// a relative context dir becomes absolute
	wd, _ := os.Getwd()
	c, err := Open(".", "")
	if err != nil || c.Dir != wd {
		t.Errorf("Open(\".\") Dir = %q %v, want %q", c.Dir, err, wd)
	}
}

func TestExcludedBy(t *testing.T) {
	c := open(t, mkctx(t, map[string]string{".dockerignore": "# comment\nREADME*\n*.go\n!keep.go\n"}), "")
	if line, pat, ok := c.ExcludedBy("main.go"); !ok || line != 3 || pat != "*.go" {
		t.Errorf("ExcludedBy(main.go) = %d %q %v, want line 3 *.go", line, pat, ok)
	}
	if _, _, ok := c.ExcludedBy("keep.go"); ok {
		t.Error("keep.go is re-included by !keep.go")
	}
	if _, _, ok := c.ExcludedBy("other.txt"); ok {
		t.Error("other.txt is not excluded")
	}
}
