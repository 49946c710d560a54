package fscopy

import (
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// source is a stage-like source at root: owners kept.
func source(root string) *Source {
	return &Source{Root: root, KeepOwner: true, Name: "COPY source not found in test source"}
}

// items resolves rels (absolute in src) to items, as a caller does.
func items(t *testing.T, src *Source, rels ...string) []Item {
	t.Helper()
	var out []Item
	for _, rel := range rels {
		host := filepath.Join(src.Root, filepath.FromSlash(rel))
		fi, err := os.Lstat(host)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Item{Source: src, Rel: path.Clean(rel), Host: host, Info: fi})
	}
	return out
}

// listTree lists the paths below dir (slash separated, sorted).
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(dir, p); rel != "." {
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	return got
}

// mkfiles creates files below dir: "a/b" a file holding its name, "a/"
// an empty directory, "a->t" a symlink to t.
func mkfiles(t *testing.T, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		full := filepath.Join(dir, filepath.FromSlash(f))
		var err error
		switch {
		case strings.HasSuffix(f, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.Contains(f, "->"):
			name, to, _ := strings.Cut(f, "->")
			from := filepath.Join(dir, filepath.FromSlash(name))
			if err = os.MkdirAll(filepath.Dir(from), 0o755); err == nil {
				err = os.Symlink(to, from)
			}
		default:
			if err = os.MkdirAll(filepath.Dir(full), 0o755); err == nil {
				err = os.WriteFile(full, []byte(f), 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
