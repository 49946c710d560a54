package buildctx

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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

func TestMayIncludeUnder(t *testing.T) {
	tests := []struct {
		name   string
		ignore string
		checks map[string]bool // rel → MayIncludeUnder
		excl   map[string]bool // rel → Excluded
	}{
		{
			name:   "no exceptions",
			ignore: "build\n*.log\n",
			checks: map[string]bool{"build": false, "other": false},
			excl:   map[string]bool{"build/x": true},
		},
		{
			name:   "exception inside the excluded dir",
			ignore: "build\n!build/keep\n",
			checks: map[string]bool{"build": true, "other": false, "buil": false},
			excl:   map[string]bool{"build": true, "build/keep": false, "build/keep/x": false, "build/other": true},
		},
		{
			name:   "deep exception",
			ignore: "a\n!a/b/c\n",
			checks: map[string]bool{"a": true, "a/b": true, "a/x": false},
			excl:   map[string]bool{"a/b": true, "a/b/c": false, "a/b/d": true},
		},
		{
			name:   "exception without a slash matches anywhere it could",
			ignore: "**/*.log\nbuild\n!keep.log\n",
			checks: map[string]bool{"build": true, "x/y": true},
		},
		{
			name:   "** exception",
			ignore: "vendor\n!**/LICENSE\n",
			checks: map[string]bool{"vendor": true, "vendor/github.com": true},
			excl:   map[string]bool{"vendor/x/LICENSE": false, "vendor/x/y.go": true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, mkctx(t, map[string]string{".dockerignore": tt.ignore}), "")
			for rel, want := range tt.checks {
				if got := c.MayIncludeUnder(rel); got != want {
					t.Errorf("MayIncludeUnder(%q) = %v, want %v", rel, got, want)
				}
			}
			for rel, want := range tt.excl {
				if got := c.Excluded(rel); got != want {
					t.Errorf("Excluded(%q) = %v, want %v", rel, got, want)
				}
			}
		})
	}
}

// TestMayIncludeUnderWildcardException: whenever a path below an excluded
// directory is not Excluded, MayIncludeUnder on that directory must be true,
// or a walk that prunes on it loses the file.
func TestMayIncludeUnderWildcardException(t *testing.T) {
	c := open(t, mkctx(t, map[string]string{".dockerignore": "src\n!*/keep\n"}), "")
	if !c.Excluded("src") {
		t.Fatal("src not excluded")
	}
	if c.Excluded("src/keep") {
		t.Fatal("src/keep excluded although \"!*/keep\" re-includes it")
	}
	if !c.MayIncludeUnder("src") {
		t.Error("with .dockerignore \"src\\n!*/keep\", Excluded(\"src/keep\") is false but MayIncludeUnder(\"src\") is false, so a walk skips src/ and src/keep is lost (an exception with a slash and a wildcard but no ** is not considered)")
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
	if c.Excluded("a.log") || c.MayIncludeUnder("x") {
		t.Error("rules applied without an ignore file")
	}
	var nilCtx *Context
	if nilCtx.Excluded("x") || nilCtx.MayIncludeUnder("x") {
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
