package inspect

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"reflect"
	"testing"
)

// tarOf builds a layer tar from entries (type '0' file, '5' dir, '2' symlink,
// '1' hardlink); names are used as given.
type tentry struct {
	name string
	typ  byte
	size int
	link string
}

func tarOf(t *testing.T, gz bool, entries ...tentry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var tw *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	} else {
		tw = tar.NewWriter(&buf)
	}
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.link, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(e.size)
		}
		if e.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(bytes.Repeat([]byte{'x'}, e.size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestReadEntries(t *testing.T) {
	for _, gz := range []bool{false, true} {
		raw := tarOf(t, gz,
			tentry{name: "./", typ: tar.TypeDir},
			tentry{name: "./etc/", typ: tar.TypeDir},
			tentry{name: "./etc/passwd", typ: tar.TypeReg, size: 12},
			tentry{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
			tentry{name: "bin/ls", typ: tar.TypeLink, link: "./bin/busybox"},
			tentry{name: "/abs/../x", typ: tar.TypeReg, size: 3},
			tentry{name: "etc/.wh.group", typ: tar.TypeReg},
		)
		got, err := ReadEntries(context.Background(), bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("gzip=%v: %v", gz, err)
		}
		want := []Entry{
			{Path: "/etc", Type: "dir"},
			{Path: "/etc/passwd", Type: "file", Size: 12},
			{Path: "/bin/sh", Type: "symlink", Size: 7, Link: "busybox"},
			{Path: "/bin/ls", Type: "hardlink", Link: "/bin/busybox"},
			{Path: "/x", Type: "file", Size: 3},
			{Path: "/etc/.wh.group", Type: "file"},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("gzip=%v:\n got %+v\nwant %+v", gz, got, want)
		}
	}
}

func TestReadEntriesBadTar(t *testing.T) {
	if _, err := ReadEntries(context.Background(), bytes.NewReader(bytes.Repeat([]byte{1}, 1024))); err == nil {
		t.Fatal("want an error for a stream that is not a tar")
	}
}

func f(p string, size int64) Entry { return Entry{Path: p, Type: "file", Size: size} }
func d(p string) Entry             { return Entry{Path: p, Type: "dir"} }

// brief is a Change without the lists, for comparing.
type brief struct {
	Kind      Kind
	Path      string
	Size      int64
	LowerSize int64
	Opaque    bool
	Hides     []Hidden
}

func briefs(cs []Change) []brief {
	var out []brief
	for _, c := range cs {
		out = append(out, brief{c.Kind, c.Path, c.Size, c.LowerSize, c.Opaque, c.Hides})
	}
	return out
}

func TestDiff(t *testing.T) {
	base := []Entry{
		d("/bin"), f("/bin/busybox", 1000), {Path: "/bin/sh", Type: "symlink", Size: 7, Link: "busybox"},
		d("/etc"), f("/etc/passwd", 50), f("/etc/group", 20),
		d("/d"), d("/d/sub"), f("/d/sub/x", 300), f("/d/a", 40),
		d("/opt"), f("/opt/big", 5000), f("/opt/small", 5),
		f("/file-to-dir", 9), d("/dir-to-file"), f("/dir-to-file/inner", 70),
	}
	cases := []struct {
		name        string
		layer       []Entry
		want        []brief
		content     int64
		hiddenBytes int64
	}{
		{
			name:    "add and modify, parent dirs of existing dirs not listed",
			layer:   []Entry{d("/etc"), f("/etc/passwd", 80), f("/etc/shadow", 30), d("/new"), f("/new/f", 1)},
			want:    []brief{{Kind: Modified, Path: "/etc/passwd", Size: 80, LowerSize: 50}, {Kind: Added, Path: "/etc/shadow", Size: 30}, {Kind: Added, Path: "/new/f", Size: 1}, {Kind: Added, Path: "/new/", Size: 0}},
			content: 111, hiddenBytes: 50,
		},
		{
			name:        "whiteout of a file",
			layer:       []Entry{d("/etc"), f("/etc/.wh.group", 0)},
			want:        []brief{{Kind: Deleted, Path: "/etc/group", Size: 20}},
			hiddenBytes: 20,
		},
		{
			name:  "whiteout of a directory lists what it hides",
			layer: []Entry{f("/.wh.d", 0)},
			want: []brief{{Kind: Deleted, Path: "/d/", Size: 340, Hides: []Hidden{
				{Path: "/d/sub/x", Size: 300}, {Path: "/d/a", Size: 40}, {Path: "/d/sub/", Size: 0},
			}}},
			hiddenBytes: 340,
		},
		{
			name:  "opaque directory: the directory stays, the new file is added",
			layer: []Entry{d("/opt"), f("/opt/.wh..wh..opq", 0), f("/opt/small", 6), f("/opt/new", 2)},
			want: []brief{
				{Kind: Deleted, Path: "/opt/", Size: 5000, Opaque: true, Hides: []Hidden{{Path: "/opt/big", Size: 5000}}},
				{Kind: Modified, Path: "/opt/small", Size: 6, LowerSize: 5},
				{Kind: Added, Path: "/opt/new", Size: 2},
			},
			content: 8, hiddenBytes: 5005,
		},
		{
			name:  "whiteout and the same directory again works as opaque",
			layer: []Entry{f("/.wh.d", 0), d("/d"), f("/d/b", 4)},
			want: []brief{
				{Kind: Deleted, Path: "/d/", Size: 340, Opaque: true, Hides: []Hidden{{Path: "/d/sub/x", Size: 300}, {Path: "/d/a", Size: 40}, {Path: "/d/sub/", Size: 0}}},
				{Kind: Added, Path: "/d/b", Size: 4},
			},
			content: 4, hiddenBytes: 340,
		},
		{
			name:    "a file replacing a directory hides its contents; a directory replacing a file",
			layer:   []Entry{f("/dir-to-file", 3), d("/file-to-dir"), f("/file-to-dir/y", 1)},
			want:    []brief{{Kind: Modified, Path: "/dir-to-file", Size: 3, LowerSize: 70}, {Kind: Added, Path: "/file-to-dir/y", Size: 1}, {Kind: Modified, Path: "/file-to-dir/", LowerSize: 9}},
			content: 4, hiddenBytes: 79,
		},
		{
			name:  "whiteout of something no lower layer has",
			layer: []Entry{f("/.wh.ghost", 0)},
			want:  []brief{{Kind: Deleted, Path: "/ghost"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tree := NewTree()
			if ch, _, _ := tree.Diff(base); len(ch) != len(base) {
				t.Fatalf("base layer: %d changes for %d entries", len(ch), len(base))
			}
			got, content, hidden := tree.Diff(c.layer)
			if !reflect.DeepEqual(briefs(got), c.want) {
				t.Errorf("changes:\n got %+v\nwant %+v", briefs(got), c.want)
			}
			if content != c.content || hidden != c.hiddenBytes {
				t.Errorf("content %d hidden %d, want %d and %d", content, hidden, c.content, c.hiddenBytes)
			}
		})
	}
}

// The tree carries each layer's result to the next one.
func TestDiffAcrossLayers(t *testing.T) {
	tree := NewTree()
	tree.Diff([]Entry{d("/a"), f("/a/x", 10)})
	tree.Diff([]Entry{f("/.wh.a", 0)})
	got, _, _ := tree.Diff([]Entry{d("/a"), f("/a/x", 11)})
	want := []brief{{Kind: Added, Path: "/a/x", Size: 11}, {Kind: Added, Path: "/a/", Size: 0}}
	if !reflect.DeepEqual(briefs(got), want) {
		t.Errorf("after the delete, /a is new again:\n got %+v\nwant %+v", briefs(got), want)
	}
	got, _, _ = tree.Diff([]Entry{d("/a"), f("/a/x", 12)})
	if want := []brief{{Kind: Modified, Path: "/a/x", Size: 12, LowerSize: 11}}; !reflect.DeepEqual(briefs(got), want) {
		t.Errorf("got %+v, want %+v", briefs(got), want)
	}
}

func TestSortChanges(t *testing.T) {
	c := []Change{{Path: "/b", Size: 1}, {Path: "/a", Size: 1}, {Path: "/c", Size: 9}}
	SortChanges(c)
	var got []string
	for _, x := range c {
		got = append(got, x.Path)
	}
	if want := []string{"/c", "/a", "/b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
