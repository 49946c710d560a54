package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

type flatEntry struct {
	name, body, link string
	typ              byte
}

func makeFlatTar(t *testing.T, entries []flatEntry) *bytes.Reader {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return bytes.NewReader(b.Bytes())
}

func listFlatTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel)
		return nil
	})
	sort.Strings(out)
	return out
}

func TestApplyFlat(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ApplyFlat sets owners: needs root")
	}
	dir := t.TempDir()
	want := func(p string) bool {
		return p == "usr" || p == "usr/bin" || strings.HasPrefix(p, "usr/bin/") || p == "etc" || strings.HasPrefix(p, "etc/")
	}
	layers := [][]flatEntry{
		{
			{name: "usr/", typ: tar.TypeDir}, {name: "usr/bin/", typ: tar.TypeDir},
			{name: "usr/bin/a", body: "a1"}, {name: "usr/bin/b", body: "b1"},
			{name: "usr/lib/", typ: tar.TypeDir}, {name: "usr/lib/big", body: "not wanted"},
			{name: "etc/", typ: tar.TypeDir}, {name: "etc/old", body: "old"}, {name: "etc/keep", body: "k"},
		},
		{
			{name: "usr/bin/.wh.b"},                                      // delete b
			{name: "usr/bin/a", body: "a2"},                              // replace a
			{name: "etc/", typ: tar.TypeDir}, {name: "etc/.wh..wh..opq"}, // hide lower etc content
			{name: "etc/new", body: "n"},
		},
	}
	for _, l := range layers {
		if err := ApplyFlat(context.Background(), dir, makeFlatTar(t, l), want); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Join(listFlatTree(t, dir), " ")
	if got != "etc etc/new usr usr/bin usr/bin/a" {
		t.Fatalf("tree = %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "usr/bin/a")); string(b) != "a2" {
		t.Errorf("usr/bin/a = %q, want the upper layer's a2", b)
	}

	// A wanted hardlink to a file the filter leaves out cannot be made.
	dir2 := t.TempDir()
	err := ApplyFlat(context.Background(), dir2, makeFlatTar(t, []flatEntry{
		{name: "usr/", typ: tar.TypeDir}, {name: "usr/lib/", typ: tar.TypeDir}, {name: "usr/lib/x", body: "x"},
		{name: "usr/bin/", typ: tar.TypeDir}, {name: "usr/bin/x", typ: tar.TypeLink, link: "usr/lib/x"},
	}), want)
	if !errors.Is(err, ErrMissingLinkTarget) {
		t.Fatalf("hardlink to an unwanted file: err = %v, want ErrMissingLinkTarget", err)
	}
}
