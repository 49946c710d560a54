// Package style holds the repository's code-shape rules as a test, so that
// CI enforces them: no non-test Go file over MaxFileLines lines, and no
// function over MaxFuncLines lines unless its doc comment says why in a
// paragraph that starts with "Long:".
package style

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	// MaxFileLines bounds a non-test Go file.
	MaxFileLines = 600
	// MaxFuncLines bounds a function (signature to closing brace).
	MaxFuncLines = 80
	// longMarker starts the doc comment paragraph that explains why a
	// function is longer than MaxFuncLines.
	longMarker = "Long:"
)

// sources returns the non-test Go files of the module, relative to its root.
func sources(t *testing.T) (root string, files []string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return root, files
}

func TestFileLength(t *testing.T) {
	root, files := sources(t)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "\n"); n > MaxFileLines {
			t.Errorf("%s: %d lines (at most %d for a non-test file: split it by job)", f, n, MaxFileLines)
		}
	}
}

func TestFunctionLength(t *testing.T) {
	root, files := sources(t)
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, filepath.Join(root, f), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			start, end := fset.Position(fd.Pos()).Line, fset.Position(fd.End()).Line
			if n := end - start + 1; n > MaxFuncLines && !explained(fd.Doc) {
				t.Errorf("%s:%d: %s is %d lines (at most %d, or a doc comment paragraph starting %q that says why)", f, start, fd.Name.Name, n, MaxFuncLines, longMarker)
			}
		}
	}
}

// explained reports whether doc has a paragraph starting with longMarker.
func explained(doc *ast.CommentGroup) bool {
	if doc == nil {
		return false
	}
	for _, line := range strings.Split(doc.Text(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), longMarker) {
			return true
		}
	}
	return false
}
