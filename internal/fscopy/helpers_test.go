package fscopy

import (
	"os"
	"path"
	"path/filepath"
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
