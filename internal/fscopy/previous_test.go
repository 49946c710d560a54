package fscopy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/buildctx"
)

func sha(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestCopyPrevious: a copy with a Previous hardlinks the files it would
// write unchanged from the previous result, and copies those whose content,
// mode or mtime changed; its FileSums know every file it wrote.
func TestCopyPrevious(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	old := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	var names []string
	for i := range 60 {
		rel := fmt.Sprintf("d%d/f%02d", i%4, i)
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("content of %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		names = append(names, rel)
	}
	sums := buildctx.OpenSums(filepath.Join(t.TempDir(), "stat.json"))
	copyAt := func(root string, prev *Previous, record bool) *FileSums {
		t.Helper()
		s := &Source{Root: src, Name: "build context", Sums: sums, Record: record}
		out := &FileSums{}
		if _, err := Copy(ctx, Target{Root: root, Previous: prev, Sums: out}, items(t, s, "/"), "/app/", Options{}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	first := t.TempDir()
	fs1 := copyAt(first, nil, true) // a cold build hashes while copying
	prev := &Previous{Dir: first, Files: fs1.Files(first)}
	if len(prev.Files) != len(names) {
		t.Fatalf("the first copy knows %d files, want %d", len(prev.Files), len(names))
	}

	// one file's content changes, one's mode, one's mtime; the rest stay
	changed := map[string]bool{"d1/f05": true, "d2/f10": true, "d3/f15": true}
	if err := os.WriteFile(filepath.Join(src, "d1/f05"), []byte("new content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "d2/f10"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(src, "d3/f15"), old.Add(time.Hour), old.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// the step's key is made first, from the stat cache
	for _, rel := range names {
		p := filepath.Join(src, rel)
		fi, _ := os.Lstat(p)
		if _, err := sums.FileSum(p, fi); err != nil {
			t.Fatal(err)
		}
	}
	second := t.TempDir()
	fs2 := copyAt(second, prev, false)
	for _, rel := range names {
		a, b := filepath.Join(first, "app", rel), filepath.Join(second, "app", rel)
		linked := inode(t, a) == inode(t, b)
		if linked == changed[rel] {
			t.Errorf("%s: linked %v, changed %v", rel, linked, changed[rel])
		}
		if got, ok := fs2.Known("app/" + rel); !ok || got != sha(t, b) {
			t.Errorf("%s: known %q %v, content %s", rel, got, ok, sha(t, b))
		}
		fi, _ := os.Lstat(b)
		si, _ := os.Lstat(filepath.Join(src, rel))
		if fi.Mode() != si.Mode() || !fi.ModTime().Equal(si.ModTime()) {
			t.Errorf("%s: mode %v mtime %v, source %v %v", rel, fi.Mode(), fi.ModTime(), si.Mode(), si.ModTime())
		}
	}
	if got := sha(t, filepath.Join(second, "app/d1/f05")); got != sha(t, filepath.Join(src, "d1/f05")) {
		t.Error("the changed file was not copied")
	}

	// a record that no longer matches its file (another inode at the
	// path) links nothing
	stale := &Previous{Dir: first, Files: map[string]PreviousFile{}}
	for rel, f := range prev.Files {
		f.Ino++
		stale.Files[rel] = f
	}
	third := t.TempDir()
	copyAt(third, stale, false)
	for _, rel := range names {
		if inode(t, filepath.Join(first, "app", rel)) == inode(t, filepath.Join(third, "app", rel)) {
			t.Errorf("%s linked from a stale record", rel)
		}
	}
}
