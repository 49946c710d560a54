package fscopy

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/testtree"

	"github.com/strata-build/strata/internal/buildctx"
)

// TestCopyDest: where an item lands (dest a directory or not, existing or
// not, through a symlink of the destination tree), and the error for more
// than one item to something that is not a directory.
func TestCopyDest(t *testing.T) {
	tests := []struct {
		name    string
		rootfs  []string // files of the destination tree before the copy
		rels    []string // items, from a source holding f, g, dir/x, dir/sub/y
		dest    string
		want    []string          // paths of the destination tree after the copy
		content map[string]string // of some files after the copy
		wantErr string
	}{
		{name: "file into a new directory", rels: []string{"/f"}, dest: "/d/", want: []string{"d", "d/f"}},
		{name: "file as a new file", rels: []string{"/f"}, dest: "/d", want: []string{"d"}},
		{name: "file into an existing directory", rootfs: []string{"d/"}, rels: []string{"/f"}, dest: "/d", want: []string{"d", "d/f"}},
		{name: "file into the root", rels: []string{"/f"}, dest: "/", want: []string{"f"}},
		{name: "file to dot", rels: []string{"/f"}, dest: ".", want: []string{"f"}},
		{name: "file to slash dot", rels: []string{"/f"}, dest: "/d/.", want: []string{"d", "d/f"}},
		{name: "file over a file", rootfs: []string{"d"}, rels: []string{"/f"}, dest: "/d", want: []string{"d"}},
		{name: "directory by its contents", rels: []string{"/dir"}, dest: "/d", want: []string{"d", "d/sub", "d/sub/y", "d/x"}},
		{name: "two items into a directory", rels: []string{"/f", "/g"}, dest: "/d/", want: []string{"d", "d/f", "d/g"}},
		{name: "two items into an existing directory without slash", rootfs: []string{"d/"}, rels: []string{"/f", "/g"}, dest: "/d", want: []string{"d", "d/f", "d/g"}},
		// BuildKit copies each source in turn to dest: the last file wins,
		// a directory source makes dest a directory the next ones go into.
		{name: "two items to a file", rels: []string{"/f", "/g"}, dest: "/d", want: []string{"d"}, content: map[string]string{"d": "g"}},
		{name: "two items to an existing file", rootfs: []string{"d"}, rels: []string{"/f", "/g"}, dest: "/d", want: []string{"d"}, content: map[string]string{"d": "g"}},
		{name: "a directory, then a file, without slash", rels: []string{"/dir", "/f"}, dest: "/d", want: []string{"d", "d/f", "d/sub", "d/sub/y", "d/x"}},
		{name: "through a symlink of the tree", rootfs: []string{"opt/", "usr/local->../opt"}, rels: []string{"/f"}, dest: "/usr/local/bin/", want: []string{"opt", "opt/bin", "opt/bin/f", "usr", "usr/local"}},
		{name: "through a dangling symlink whose target's parents are missing", rootfs: []string{"out->/a/b/c"}, rels: []string{"/f"}, dest: "/out/", want: []string{"a", "a/b", "a/b/c", "a/b/c/f", "out"}},
		{name: "a dangling symlink in the way leads to the directory made", rootfs: []string{"d->nowhere"}, rels: []string{"/f"}, dest: "/d/", want: []string{"d", "nowhere", "nowhere/f"}},
		{name: "a file in the way", rootfs: []string{"d"}, rels: []string{"/f"}, dest: "/d/e/", wantErr: "cannot copy to /d/e: /d is not a directory"},
	}
	src := t.TempDir()
	testtree.Make(t, src, "f", "g", "dir/x", "dir/sub/y")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rootfs := t.TempDir()
			testtree.Make(t, rootfs, tt.rootfs...)
			_, err := Copy(context.Background(), Target{Root: rootfs}, items(t, source(src), tt.rels...), tt.dest, Options{})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(testtree.List(t, rootfs), " "); got != strings.Join(tt.want, " ") {
				t.Errorf("tree %q, want %q", got, strings.Join(tt.want, " "))
			}
			for f, want := range tt.content {
				if b, err := os.ReadFile(filepath.Join(rootfs, f)); err != nil || string(b) != want {
					t.Errorf("%s holds %q (%v), want %q", f, b, err, want)
				}
			}
		})
	}
}

// TestCopyOwnersAndModes: owners kept from a stage, root for a context,
// --chown for everything; --chmod on files, directories and the parents
// the copy creates, never on symlinks.
func TestCopyOwnersAndModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	src := t.TempDir()
	testtree.Make(t, src, "dir/f", "dir/sub/g", "dir/l->f")
	for _, p := range []string{"dir", "dir/f", "dir/sub", "dir/sub/g"} {
		if err := os.Lchown(filepath.Join(src, p), 1000, 1001); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Lchown(filepath.Join(src, "dir/l"), 1002, 1003); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "dir/sub/g"), os.ModeSetuid|0o750); err != nil {
		t.Fatal(err)
	}
	type want struct {
		uid, gid int
		mode     os.FileMode
	}
	tests := []struct {
		name      string
		keepOwner bool
		owner     *Owner
		chmod     string
		want      map[string]want // below /p/q (the created parents /p, /p/q)
	}{
		{name: "stage owners kept", keepOwner: true, want: map[string]want{
			"..": {0, 0, os.ModeDir | 0o755}, "f": {1000, 1001, 0o644}, "sub": {1000, 1001, os.ModeDir | 0o755},
			"sub/g": {1000, 1001, os.ModeSetuid | 0o750}, "l": {1002, 1003, os.ModeSymlink | 0o777},
		}},
		{name: "context files owned by root", want: map[string]want{
			"f": {0, 0, 0o644}, "sub/g": {0, 0, os.ModeSetuid | 0o750}, "l": {0, 0, os.ModeSymlink | 0o777},
		}},
		{name: "chown", keepOwner: true, owner: &Owner{UID: 7, GID: 8}, want: map[string]want{
			"..": {7, 8, os.ModeDir | 0o755}, "f": {7, 8, 0o644}, "sub": {7, 8, os.ModeDir | 0o755}, "l": {7, 8, os.ModeSymlink | 0o777},
		}},
		{name: "octal chmod", chmod: "0640", want: map[string]want{
			"..": {0, 0, os.ModeDir | 0o640}, "f": {0, 0, 0o640}, "sub": {0, 0, os.ModeDir | 0o640}, "sub/g": {0, 0, 0o640},
			"l": {0, 0, os.ModeSymlink | 0o777},
		}},
		{name: "octal chmod with special bits", chmod: "7755", want: map[string]want{
			"f": {0, 0, os.ModeSetuid | os.ModeSetgid | os.ModeSticky | 0o755},
		}},
		{name: "symbolic chmod", chmod: "u=rwX,go=rX", want: map[string]want{
			"..": {0, 0, os.ModeDir | 0o755}, "f": {0, 0, 0o644}, "sub": {0, 0, os.ModeDir | 0o755}, "sub/g": {0, 0, 0o755}, // "=" clears setuid, as in chmod(1)
		}},
		{name: "symbolic chmod adding", chmod: "g+w,o-r", want: map[string]want{
			"f": {0, 0, 0o660}, "sub": {0, 0, os.ModeDir | 0o771},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cm, err := ParseChmod(tt.chmod)
			if err != nil {
				t.Fatal(err)
			}
			rootfs := t.TempDir()
			s := &Source{Root: src, KeepOwner: tt.keepOwner, Name: "test"}
			if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, s, "/dir"), "/p/q/", Options{Owner: tt.owner, Chmod: cm}); err != nil {
				t.Fatal(err)
			}
			for rel, w := range tt.want {
				fi, err := os.Lstat(filepath.Join(rootfs, "p/q", rel))
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if int(st.Uid) != w.uid || int(st.Gid) != w.gid || fi.Mode() != w.mode {
					t.Errorf("%s: %d:%d %v, want %d:%d %v", rel, st.Uid, st.Gid, fi.Mode(), w.uid, w.gid, w.mode)
				}
			}
		})
	}
}

func TestParseChmod(t *testing.T) {
	tests := []struct {
		in      string
		file    os.FileMode // what a 0644 file gets
		dir     os.FileMode // what a 0755 directory gets
		wantErr string
	}{
		{in: "", file: 0o644, dir: os.ModeDir | 0o755},
		{in: "0", file: 0, dir: os.ModeDir},
		{in: "755", file: 0o755, dir: os.ModeDir | 0o755},
		{in: "4711", file: os.ModeSetuid | 0o711, dir: os.ModeDir | os.ModeSetuid | 0o711},
		{in: "1777", file: os.ModeSticky | 0o777, dir: os.ModeDir | os.ModeSticky | 0o777},
		{in: "2700", file: os.ModeSetgid | 0o700, dir: os.ModeDir | os.ModeSetgid | 0o700},
		{in: "a+x", file: 0o755, dir: os.ModeDir | 0o755},
		{in: "a=rX", file: 0o444, dir: os.ModeDir | 0o555},
		{in: "u+s,g-r", file: os.ModeSetuid | 0o604, dir: os.ModeDir | os.ModeSetuid | 0o715},
		{in: "10000", wantErr: "invalid chmod parameter: '10000'. it should be octal string and between 0 and 07777"},
		{in: "789", wantErr: "invalid chmod parameter: '789'. it should be octal string and between 0 and 07777"},
		{in: "99999999999999999999", wantErr: "invalid chmod parameter: '99999999999999999999'. it should be octal string and between 0 and 07777"},
		{in: "z+q", wantErr: `invalid chmod parameter "z+q": `},
	}
	for _, tt := range tests {
		c, err := ParseChmod(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("ParseChmod(%q) = %v, want error %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseChmod(%q): %v", tt.in, err)
			continue
		}
		if got := c.Apply(0o644); got != tt.file {
			t.Errorf("ParseChmod(%q) on a 0644 file: %v, want %v", tt.in, got, tt.file)
		}
		if got := c.Apply(os.ModeDir | 0o755); got != tt.dir {
			t.Errorf("ParseChmod(%q) on a 0755 directory: %v, want %v", tt.in, got, tt.dir)
		}
	}
}

// TestCopySymlinks: a symlink named as an item is followed within its
// source's root; one below a copied directory is copied as a symlink; a
// dangling one named as an item is an error that names the source.
func TestCopySymlinks(t *testing.T) {
	src := t.TempDir()
	testtree.Make(t, src, "real/f", "tofile->real/f", "todir->real", "escape->/../../real/f", "dangling->nowhere", "real/rel->f", "real/abs->/etc/passwd")
	rootfs := t.TempDir()
	s := source(src)
	if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, s, "/tofile", "/todir", "/escape"), "/out/", Options{}); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]string{"out/tofile": "file real/f", "out/escape": "file real/f", "out/rel": "link f", "out/abs": "link /etc/passwd", "out/f": "file real/f"} {
		p := filepath.Join(rootfs, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		got := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			got = "link " + l
		} else {
			got = "file " + fileText(t, p)
		}
		if got != want {
			t.Errorf("%s: %s, want %s", rel, got, want)
		}
	}
	_, err := Copy(context.Background(), Target{Root: rootfs}, items(t, s, "/dangling"), "/out/", Options{})
	if err == nil || err.Error() != `COPY source not found in test source: "/dangling" is a dangling symlink` {
		t.Errorf("dangling symlink: %v", err)
	}
}

// TestCopyParents: with --parents an item lands at dest/Keep, a directory
// by its contents.
func TestCopyParents(t *testing.T) {
	src := t.TempDir()
	testtree.Make(t, src, "a/b/c/f", "a/b/g", "x/y")
	its := items(t, source(src), "/a/b/c", "/a/b/g", "/x/y")
	its[0].Keep, its[1].Keep, its[2].Keep = "b/c", "b/g", "x/y"
	rootfs := t.TempDir()
	if _, err := Copy(context.Background(), Target{Root: rootfs}, its, "/out/", Options{Parents: true}); err != nil {
		t.Fatal(err)
	}
	want := "out out/b out/b/c out/b/c/f out/b/g out/x out/x/y"
	if got := strings.Join(testtree.List(t, rootfs), " "); got != want {
		t.Errorf("tree %q, want %q", got, want)
	}
}

// TestCopyIgnore: a source's ignore rules leave paths out of a copy, and
// --exclude applies below a directory item but not to a file item.
func TestCopyIgnore(t *testing.T) {
	src := t.TempDir()
	testtree.Make(t, src, "dir/a.log", "dir/b.txt", "dir/keep/c.log", "dir/keep/d.txt", "top.log")
	if err := os.WriteFile(filepath.Join(src, ".dockerignore"), []byte("**/*.log\n!dir/keep/c.log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bctx, err := buildctx.Open(src, "")
	if err != nil {
		t.Fatal(err)
	}
	s := &Source{Root: src, Name: "build context", Ignore: bctx}
	rootfs := t.TempDir()
	dirItem := items(t, s, "/dir")
	if _, err := Copy(context.Background(), Target{Root: rootfs}, dirItem, "/a/", Options{}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(testtree.List(t, filepath.Join(rootfs, "a")), " "), "b.txt keep keep/c.log keep/d.txt"; got != want {
		t.Errorf("ignored: %q, want %q", got, want)
	}
	its := append(dirItem, items(t, s, "/dir/b.txt")...)
	if _, err := Copy(context.Background(), Target{Root: rootfs}, its, "/b/", Options{Exclude: []string{"**/*.txt"}}); err != nil {
		t.Fatal(err)
	}
	// b.txt is there as the file item, not from the directory
	if got, want := strings.Join(testtree.List(t, filepath.Join(rootfs, "b")), " "), "b.txt keep keep/c.log"; got != want {
		t.Errorf("ignored and excluded: %q, want %q", got, want)
	}
	if _, err := Copy(context.Background(), Target{Root: rootfs}, dirItem, "/c/", Options{Exclude: []string{"["}}); err == nil || !strings.HasPrefix(err.Error(), "--exclude: ") {
		t.Errorf("bad --exclude pattern: %v", err)
	}
}

// TestCopyUnpack: with Unpack a local archive item is extracted into dest
// (with --chown on its files), unless the item says NoUnpack; other files
// are copied.
func TestCopyUnpack(t *testing.T) {
	src := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "pkg/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 5, Gid: 5},
		{Name: "pkg/file", Typeflag: tar.TypeReg, Mode: 0o640, Size: 5, Uid: 5, Gid: 5},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("hello"))
		}
	}
	tw.Close()
	if err := os.WriteFile(filepath.Join(src, "a.tar"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	testtree.Make(t, src, "plain.txt")
	s := &Source{Root: src, Name: "build context"}
	t.Run("unpack", func(t *testing.T) {
		rootfs := t.TempDir()
		if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, s, "/a.tar", "/plain.txt"), "/x/", Options{Unpack: true, Owner: &Owner{UID: 9, GID: 9}}); err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(testtree.List(t, rootfs), " "), "x x/pkg x/pkg/file x/plain.txt"; got != want {
			t.Errorf("tree %q, want %q", got, want)
		}
		if fileText(t, filepath.Join(rootfs, "x/pkg/file")) != "hello" {
			t.Error("archive member content")
		}
		if os.Geteuid() == 0 {
			fi, _ := os.Lstat(filepath.Join(rootfs, "x/pkg/file"))
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 9 || st.Gid != 9 {
				t.Errorf("extracted file owned by %d:%d, want the --chown 9:9", st.Uid, st.Gid)
			}
		}
	})
	t.Run("no unpack", func(t *testing.T) {
		rootfs := t.TempDir()
		its := items(t, s, "/a.tar")
		its[0].NoUnpack = true
		if _, err := Copy(context.Background(), Target{Root: rootfs}, its, "/x/", Options{Unpack: true}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(testtree.List(t, rootfs), " "); got != "x x/a.tar" {
			t.Errorf("tree %q, want the archive as a file", got)
		}
	})
	t.Run("copy", func(t *testing.T) {
		rootfs := t.TempDir()
		if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, s, "/a.tar"), "/x/", Options{}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(testtree.List(t, rootfs), " "); got != "x x/a.tar" {
			t.Errorf("tree %q, want the archive as a file", got)
		}
	})
}

// TestCopySums: a source with Sums records the checksum of every regular
// file it copies, from the copy's own read.
func TestCopySums(t *testing.T) {
	src := t.TempDir()
	testtree.Make(t, src, "dir/a", "dir/sub/b")
	statFile := filepath.Join(t.TempDir(), "stat.json")
	sums := buildctx.OpenSums(statFile)
	s := &Source{Root: src, Name: "build context", Sums: sums, Record: true}
	if _, err := Copy(context.Background(), Target{Root: t.TempDir()}, items(t, s, "/dir"), "/", Options{}); err != nil {
		t.Fatal(err)
	}
	// Replace the files' content behind the stat cache's back (same size,
	// mtime put back): the recorded sums are returned, not new ones.
	for _, rel := range []string{"dir/a", "dir/sub/b"} {
		p := filepath.Join(src, rel)
		fi, _ := os.Lstat(p)
		want := sha256.Sum256([]byte(rel))
		got, err := sums.FileSum(p, fi)
		if err != nil || got != hex.EncodeToString(want[:]) {
			t.Errorf("%s: sum %s %v, want %x", rel, got, err, want)
		}
	}
	if err := sums.Save(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(statFile); err != nil || strings.Count(string(b), "\x00") != 2 {
		t.Errorf("stat cache %s %v: want two recorded sums", b, err)
	}
}

// TestCopySerial: the serial copy (--output type=local, cache mounts)
// writes the same files.
func TestCopySerial(t *testing.T) {
	src := t.TempDir()
	testtree.Make(t, src, "a/b/c", "a/d", "e->a/d")
	if err := os.Link(filepath.Join(src, "a/d"), filepath.Join(src, "a/hard")); err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, source(src), "/"), "/", Options{Serial: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(testtree.List(t, rootfs), " "), "a a/b a/b/c a/d a/hard e"; got != want {
		t.Errorf("tree %q, want %q", got, want)
	}
	if inode(t, filepath.Join(rootfs, "a/d")) != inode(t, filepath.Join(rootfs, "a/hard")) {
		t.Error("hardlinks not kept")
	}
}

// TestCopySparse: a sparse file is copied extent by extent (its holes left
// holes) whether or not it is hashed while copied.
func TestCopySparse(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	for _, off := range []int64{0, size / 2, size - 4} {
		if _, err := f.WriteAt([]byte("data"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	for _, sums := range []*buildctx.Sums{nil, buildctx.OpenSums(filepath.Join(t.TempDir(), "s"))} {
		rootfs := t.TempDir()
		s := &Source{Root: src, Name: "build context", Sums: sums, Record: true}
		if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, s, "/sparse"), "/", Options{}); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(rootfs, "sparse"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != size || st.Blocks*512 > 1<<20 {
			t.Errorf("sums %v: copy of a %d-byte sparse file: size %d, %d bytes of disk", sums != nil, size, st.Size, st.Blocks*512)
		}
	}
}

// TestCopyXattrs records what the copy does with extended attributes: a
// copied file does not carry them (BuildKit's copy does; strata's never
// has), a file hardlinked from a source layer is the layer's own inode and
// so keeps them.
func TestCopyXattrs(t *testing.T) {
	src := t.TempDir()
	testtree.Make(t, src, "f")
	if err := syscall.Setxattr(filepath.Join(src, "f"), "user.test", []byte("v"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	rootfs := t.TempDir()
	if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, source(src), "/f"), "/", Options{}); err != nil {
		t.Fatal(err)
	}
	if n, err := syscall.Getxattr(filepath.Join(rootfs, "f"), "user.test", make([]byte, 8)); err == nil {
		t.Errorf("copied file has the xattr (%d bytes): update the package doc and this test", n)
	}
	if os.Geteuid() != 0 {
		return
	}
	linked := t.TempDir()
	s := source(src)
	s.Layers = []string{src}
	if _, err := Copy(context.Background(), Target{Root: linked}, items(t, s, "/f"), "/", Options{}); err != nil {
		t.Fatal(err)
	}
	if inode(t, filepath.Join(linked, "f")) != inode(t, filepath.Join(src, "f")) {
		t.Fatal("not linked from the layer")
	}
	if _, err := syscall.Getxattr(filepath.Join(linked, "f"), "user.test", make([]byte, 8)); err != nil {
		t.Errorf("linked file lost its xattr: %v", err)
	}
}

// TestMkdirAll: the parents WORKDIR makes get the owner and mode; existing
// directories are left alone.
func TestMkdirAll(t *testing.T) {
	root := t.TempDir()
	testtree.Make(t, root, "a/")
	if err := os.Chmod(filepath.Join(root, "a"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(root, "/a/b/c", Owner{}, 0o751); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]os.FileMode{"a": 0o700, "a/b": 0o751, "a/b/c": 0o751} {
		if fi, err := os.Stat(filepath.Join(root, rel)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", rel, fi.Mode(), err, want)
		}
	}
	if err := MkdirAll(root, "/", Owner{}, 0o755); err != nil {
		t.Errorf("MkdirAll(/): %v", err)
	}
}

// TestCopyDirTimes: directories the copy makes get their source's mtime
// once their contents are written, also for an item that lands in a
// directory that the copy merges into.
func TestCopyDirTimes(t *testing.T) {
	src := t.TempDir()
	testtree.Make(t, src, "d/e/f", "d/g")
	old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, rel := range []string{"d/e", "d"} {
		if err := os.Chtimes(filepath.Join(src, rel), old, old); err != nil {
			t.Fatal(err)
		}
	}
	rootfs := t.TempDir()
	if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, source(src), "/"), "/", Options{}); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"d", "d/e"} {
		if fi, err := os.Stat(filepath.Join(rootfs, rel)); err != nil || !fi.ModTime().Equal(old) {
			t.Errorf("%s: mtime %v %v, want %v", rel, fi.ModTime(), err, old)
		}
	}
}

func TestCopyCancelledWalk(t *testing.T) {
	src := t.TempDir()
	testtree.Make(t, src, "a/b")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Walk(ctx, items(t, source(src), "/")[0], nil, func(Entry) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled walk: %v", err)
	}
}
