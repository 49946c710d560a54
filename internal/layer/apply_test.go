package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// hostileDirs makes base/p/q/root so that "../../.." from an entry directly in
// root lands in base, which the test can inspect.
func hostileDirs(t *testing.T) (base, dir string) {
	base = t.TempDir()
	dir = filepath.Join(base, "p", "q", "root")
	must(t, os.MkdirAll(dir, 0o755))
	return base, dir
}

// outsideEntries lists everything under base that is not under dir.
func outsideEntries(t *testing.T, base, dir string) []string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return filepath.SkipDir
		}
		if p != base {
			rel, _ := filepath.Rel(base, p)
			out = append(out, rel)
		}
		return nil
	}))
	sort.Strings(out)
	return out
}

func fileSum(t *testing.T, p string) ([32]byte, uint64) {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	return sha256.Sum256(b), uint64(st.Nlink)
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func TestApplyHostile(t *testing.T) {
	requireRoot(t)
	type check func(t *testing.T, dir string)
	fileIs := func(rel, content string) check {
		return func(t *testing.T, dir string) {
			b, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil || string(b) != content {
				t.Errorf("%s = %q, %v; want %q", rel, b, err, content)
			}
		}
	}
	typeIs := func(rel string, typ uint32) check {
		return func(t *testing.T, dir string) {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(dir, rel), &st); err != nil || st.Mode&unix.S_IFMT != typ {
				t.Errorf("%s: mode %#o, %v; want type %#o", rel, st.Mode, err, typ)
			}
		}
	}
	absent := func(rel string) check {
		return func(t *testing.T, dir string) {
			if _, err := os.Lstat(filepath.Join(dir, rel)); !os.IsNotExist(err) {
				t.Errorf("%s exists (%v), want absent", rel, err)
			}
		}
	}
	var many = newTB()
	for i := range 20 {
		many.file("f"+strings.Repeat("x", i), "", 0o644)
	}
	whole := newTB().dir("d/", 0o755).file("d/a", strings.Repeat("data ", 5000), 0o644).bytes()
	truncated := gz(whole)
	truncated = truncated[:len(truncated)/2]

	cases := []struct {
		name    string
		tar     []byte
		opts    ApplyOptions
		wantErr string // "" means success expected; "any" means error or safe result
		checks  []check
	}{
		{name: "dotdot", tar: newTB().file("../x", "evil", 0o644).bytes(), wantErr: "escapes"},
		{name: "dotdot nested", tar: newTB().file("a/../../x", "evil", 0o644).bytes(), wantErr: "escapes"},
		{name: "absolute", tar: newTB().file("/abs", "evil", 0o644).bytes(), wantErr: "absolute"},
		{
			name: "symlink to ancestors then child",
			tar:  newTB().symlink("a", "../../..").file("a/evil", "evil", 0o644).bytes(), wantErr: "any",
			checks: []check{typeIs("a", unix.S_IFLNK)},
		},
		{
			name: "absolute symlink etc then etc/passwd",
			tar:  newTB().symlink("etc", "/etc").file("etc/passwd", "pwned", 0o644).bytes(), wantErr: "any",
		},
		{
			name: "hardlink outside", tar: newTB().link("h", "../../outside").bytes(), wantErr: "escapes",
		},
		{
			name: "hardlink through symlink to host file",
			tar:  newTB().symlink("s", "/").link("h", "s/etc/passwd").bytes(), wantErr: "any",
			checks: []check{absent("h")},
		},
		{
			name: "hardlink through dotdot symlinks",
			tar:  newTB().symlink("d2", "..").link("x", "d2/d2/q/p").bytes(), wantErr: "any",
			checks: []check{absent("x")},
		},
		{
			name:   "hardlink to symlink links the symlink",
			tar:    newTB().symlink("s2", "/etc/passwd").link("h2", "s2").bytes(),
			checks: []check{typeIs("h2", unix.S_IFLNK)},
		},
		{
			name:   "file replaces symlink instead of writing through it",
			tar:    newTB().symlink("x", "../sibling").file("x", "data", 0o644).bytes(),
			checks: []check{fileIs("x", "data"), typeIs("x", unix.S_IFREG)},
		},
		{
			name: "symlink loop as parent", tar: newTB().symlink("loop", "loop").file("loop/x", "x", 0o644).bytes(), wantErr: "any",
		},
		{
			name: "duplicate entries", tar: newTB().file("f", "A", 0o644).file("f", "B", 0o600).bytes(),
			checks: []check{fileIs("f", "B")},
		},
		{
			name: "file then dir", tar: newTB().file("d", "file", 0o644).dir("d/", 0o755).file("d/x", "x", 0o644).bytes(),
			checks: []check{typeIs("d", unix.S_IFDIR), fileIs("d/x", "x")},
		},
		{
			name: "dir then file", tar: newTB().dir("e/", 0o755).file("e/y", "y", 0o644).file("e", "file", 0o644).bytes(),
			checks: []check{fileIs("e", "file")},
		},
		{
			name: "whiteout replaces earlier entry", tar: newTB().dir("w/", 0o755).file("w/z", "z", 0o644).file(".wh.w", "", 0).bytes(),
			checks: []check{typeIs("w", unix.S_IFCHR)},
		},
		{name: "whiteout of dot", tar: newTB().file(".wh..", "", 0).bytes(), wantErr: "invalid whiteout"},
		{name: "whiteout of dotdot", tar: newTB().file("a/.wh...", "", 0).bytes(), wantErr: "invalid whiteout"},
		{name: "truncated gzip", tar: truncated, wantErr: "unexpected EOF"},
		{name: "over MaxEntries", tar: many.bytes(), opts: ApplyOptions{MaxEntries: 5}, wantErr: "more than 5"},
		{name: "at MaxEntries", tar: newTB().file("a", "", 0o644).file("b", "", 0o644).bytes(), opts: ApplyOptions{MaxEntries: 2}},
		{name: "overlay xattr ignored", tar: newTB().header(&tar.Header{
			Typeflag: tar.TypeDir, Name: "o/", Mode: 0o755, ModTime: testTime,
			PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.redirect": "/etc", "SCHILY.xattr.user.ok": "1"},
		}).bytes(), checks: []check{func(t *testing.T, dir string) {
			if _, err := getXattr(filepath.Join(dir, "o"), "trusted.overlay.redirect"); err == nil {
				t.Error("trusted.overlay.redirect from the tar was applied")
			}
			if v, err := getXattr(filepath.Join(dir, "o"), "user.ok"); err != nil || string(v) != "1" {
				t.Errorf("user.ok = %q, %v", v, err)
			}
		}}},
	}
	passwdSum, passwdLinks := fileSum(t, "/etc/passwd")
	for _, tc := range cases {
		for _, resolver := range []string{"openat2", "securejoin"} {
			t.Run(tc.name+"/"+resolver, func(t *testing.T) {
				base, dir := hostileDirs(t)
				x := &extractor{layer: true, maxEntries: tc.opts.MaxEntries, forceSecureJoin: resolver == "securejoin"}
				_, err := x.run(context.Background(), dir, bytes.NewReader(tc.tar))
				switch {
				case tc.wantErr == "any":
					t.Logf("result: %v", err)
				case tc.wantErr == "" && err != nil:
					t.Errorf("unexpected error: %v", err)
				case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
					t.Errorf("err = %v, want %q", err, tc.wantErr)
				}
				if out := outsideEntries(t, base, dir); strings.Join(out, ",") != "p,p/q" {
					t.Errorf("written outside dir: %q", out)
				}
				if _, err := os.Lstat(filepath.Join(filepath.Dir(base), "evil")); err == nil {
					t.Errorf("%s/evil exists", filepath.Dir(base))
				}
				if sum, links := fileSum(t, "/etc/passwd"); sum != passwdSum || links != passwdLinks {
					t.Error("/etc/passwd was modified or hardlinked")
				}
				for _, c := range tc.checks {
					c(t, dir)
				}
			})
		}
	}
}

func TestApplyMetadata(t *testing.T) {
	requireRoot(t)
	mtime := time.Date(2005, 6, 7, 8, 9, 10, 0, time.UTC)
	layer := newTB().
		header(&tar.Header{Typeflag: tar.TypeDir, Name: "./usr/", Mode: 0o750, Uid: 5, Gid: 6, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/suid", Mode: 0o6755, Uid: 7, Gid: 8, ModTime: mtime, Size: 2,
			PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}})
	layer.tw.Write([]byte("hi"))
	layer.
		header(&tar.Header{Typeflag: tar.TypeReg, Name: "deep/er/file", Mode: 0o644, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeSymlink, Name: "usr/lnk", Linkname: "suid", Uid: 9, Gid: 9, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeLink, Name: "usr/hard", Linkname: "./usr/suid", ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeBlock, Name: "dev/blk", Mode: 0o660, Devmajor: 7, Devminor: 1, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o600, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeReg, Name: "opq/.wh..wh..opq", ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeReg, Name: "gone/.wh.x", ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeReg, Name: ".wh..wh.plnk", ModTime: mtime})
	raw := layer.bytes()
	raw = append(raw, make([]byte, 4096)...) // trailing padding is part of the diffID

	dir := t.TempDir()
	d, err := Apply(context.Background(), dir, bytes.NewReader(raw), ApplyOptions{})
	must(t, err)
	if d != digest.FromBytes(raw) {
		t.Errorf("diffID %s, want %s (digest of every byte)", d, digest.FromBytes(raw))
	}
	got := snapshotTree(t, dir)
	type want struct {
		typ      string
		mode     os.FileMode
		uid, gid uint32
		mtime    bool
	}
	for rel, w := range map[string]want{
		"usr":          {"dir", 0o750, 5, 6, true},
		"usr/suid":     {"file", 0o6755, 7, 8, true},
		"usr/hard":     {"file", 0o6755, 7, 8, true},
		"usr/lnk":      {"symlink", 0, 9, 9, true},
		"deep":         {"dir", 0o755, 0, 0, false},
		"deep/er/file": {"file", 0o644, 0, 0, true},
		"dev/blk":      {"block", 0o660, 0, 0, true},
		"dev/fifo":     {"fifo", 0o600, 0, 0, true},
		"tmp":          {"dir", 0o1777, 0, 0, true},
		"opq":          {"dir", 0o755, 0, 0, false},
	} {
		g := got[rel]
		if g.Type != w.typ || g.Mode != w.mode || g.UID != w.uid || g.GID != w.gid {
			t.Errorf("%s: got %s %v %d:%d, want %s %v %d:%d", rel, g.Type, g.Mode, g.UID, g.GID, w.typ, w.mode, w.uid, w.gid)
		}
		if w.mtime && g.Mtime != mtime.Unix() {
			t.Errorf("%s: mtime %d, want %d", rel, g.Mtime, mtime.Unix())
		}
	}
	if got["usr/suid"].Nlink != 2 || got["usr/suid"].Xattrs != "user.k=v" {
		t.Errorf("usr/suid: nlink %d xattrs %q", got["usr/suid"].Nlink, got["usr/suid"].Xattrs)
	}
	if got["usr/lnk"].Link != "suid" {
		t.Errorf("usr/lnk -> %q", got["usr/lnk"].Link)
	}
	if got["dev/blk"].Rdev != unix.Mkdev(7, 1) {
		t.Errorf("dev/blk rdev %d", got["dev/blk"].Rdev)
	}
	if v, err := getXattr(filepath.Join(dir, "opq"), "trusted.overlay.opaque"); err != nil || string(v) != "y" {
		t.Errorf("opq opaque = %q, %v", v, err)
	}
}

func TestApplyCanceled(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Apply(ctx, t.TempDir(), bytes.NewReader(newTB().file("a", "a", 0o644).bytes()), ApplyOptions{}); err == nil {
		t.Error("want context error")
	}
}

func TestUnpack(t *testing.T) {
	requireRoot(t)
	mtime := time.Date(2003, 4, 5, 6, 7, 8, 0, time.UTC)
	b := newTB().
		header(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o700, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeDir, Name: "app/", Mode: 0o755, Uid: 1234, Gid: 1235, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeReg, Name: "app/bin", Mode: 0o755, Uid: 1234, Gid: 1235, ModTime: mtime, Size: 3})
	b.tw.Write([]byte("new"))
	b.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: "app/link", Linkname: "bin", Uid: 1234, Gid: 1235, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeLink, Name: "app/hard", Linkname: "app/bin", Mode: 0o755, Uid: 1234, Gid: 1235, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeReg, Name: "app/.wh.keep", Mode: 0o600, Uid: 1234, Gid: 1235, ModTime: mtime}).
		header(&tar.Header{Typeflag: tar.TypeReg, Name: "/abs/file", Mode: 0o640, Uid: 1234, Gid: 1235, ModTime: mtime})
	archive := gz(b.bytes())

	for _, tc := range []struct {
		name     string
		owner    *Owner
		uid, gid uint32
	}{
		{"archive owners", nil, 1234, 1235},
		{"owner override", &Owner{UID: 42, GID: 43}, 42, 43},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := t.TempDir()
			must(t, os.Chmod(dest, 0o755))
			mustWrite(t, filepath.Join(dest, "app", "bin"), "old content", 0o600)
			mustWrite(t, filepath.Join(dest, "app", "existing"), "untouched", 0o600)
			must(t, Unpack(context.Background(), dest, bytes.NewReader(archive), tc.owner, ApplyOptions{}))
			got := snapshotTree(t, dest)
			for _, rel := range []string{"app", "app/bin", "app/link", "app/hard", "app/.wh.keep", "abs/file"} {
				g := got[rel]
				if g.UID != tc.uid || g.GID != tc.gid {
					t.Errorf("%s: owner %d:%d, want %d:%d", rel, g.UID, g.GID, tc.uid, tc.gid)
				}
				if g.Mtime != mtime.Unix() {
					t.Errorf("%s: mtime %d, want %d", rel, g.Mtime, mtime.Unix())
				}
			}
			if g := got["app/bin"]; g.Mode != 0o755 || g.Size != 3 || g.Nlink != 2 {
				t.Errorf("app/bin: %+v, want mode 0755, 3 bytes, 2 links", g)
			}
			if g := got["abs/file"]; g.Mode != 0o640 {
				t.Errorf("abs/file mode %v", g.Mode)
			}
			if got["app/existing"].Size != int64(len("untouched")) {
				t.Error("app/existing changed")
			}
			if got["app/.wh.keep"].Type != "file" {
				t.Error("Unpack converted a .wh. file")
			}
			if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("dest mode changed by the ./ entry: %v %v", fi.Mode(), err)
			}
		})
	}

	t.Run("escape", func(t *testing.T) {
		base, dir := hostileDirs(t)
		err := Unpack(context.Background(), dir, bytes.NewReader(gz(newTB().file("../../x", "evil", 0o644).bytes())), nil, ApplyOptions{})
		if err == nil || !strings.Contains(err.Error(), "escapes") {
			t.Errorf("err = %v, want escape error", err)
		}
		if out := outsideEntries(t, base, dir); strings.Join(out, ",") != "p,p/q" {
			t.Errorf("written outside dest: %q", out)
		}
	})
	t.Run("symlink in dest is not followed out", func(t *testing.T) {
		base, dir := hostileDirs(t)
		must(t, os.Symlink("../../..", filepath.Join(dir, "up")))
		must(t, Unpack(context.Background(), dir, bytes.NewReader(newTB().file("up/evil", "evil", 0o644).bytes()), nil, ApplyOptions{}))
		if out := outsideEntries(t, base, dir); strings.Join(out, ",") != "p,p/q" {
			t.Errorf("written outside dest: %q", out)
		}
		if _, err := os.Stat(filepath.Join(dir, "evil")); err != nil {
			t.Errorf("up/evil should land in dest/evil: %v", err)
		}
	})
}

// TestUnpackEntryNames: ADD extracts archives the way BuildKit does (moby/
// go-archive's Unpack, names cleaned with filepath.Clean, issue 13): entries
// whose name cleans to "." ("", ".", "./") are skipped whatever their type,
// "./a/../b" is "b", a leading "/" is dropped, a later entry replaces an
// earlier one (directories merge and take the later metadata), missing
// parents are made 0755 root whatever --chown says, and a hardlink entry's
// owner, mode and times go to the file it links (both names are one inode).
func TestUnpackEntryNames(t *testing.T) {
	requireRoot(t)
	mt := time.Date(2003, 4, 5, 6, 7, 8, 0, time.UTC)
	h := func(typ byte, name string, mode int64, uid int, body string) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Uid: uid, Gid: uid, Size: int64(len(body)), ModTime: mt}
	}
	b := newTB()
	add := func(hd *tar.Header, body string) {
		b.header(hd)
		b.tw.Write([]byte(body))
	}
	add(h(tar.TypeDir, "./", 0o700, 1000, ""), "")
	add(h(tar.TypeDir, "", 0o750, 1000, ""), "")
	add(h(tar.TypeDir, ".", 0o711, 1000, ""), "")
	add(h(tar.TypeReg, "", 0o644, 0, "nameless\n"), "nameless\n")
	add(h(tar.TypeReg, "./a", 0o644, 0, "a\n"), "a\n")
	add(h(tar.TypeReg, "./sub/../b", 0o600, 0, "b\n"), "b\n")
	add(h(tar.TypeReg, "/c", 0o640, 0, "c\n"), "c\n")
	add(h(tar.TypeDir, "d/", 0o700, 0, ""), "")
	add(h(tar.TypeDir, "./d", 0o750, 0, ""), "")
	add(h(tar.TypeReg, "e", 0o644, 0, "one\n"), "one\n")
	add(h(tar.TypeReg, "./e", 0o600, 0, "two\n"), "two\n")
	add(h(tar.TypeReg, "x/y/z", 0o644, 0, "z\n"), "z\n")
	add(h(tar.TypeReg, "f", 0o644, 0, "f\n"), "f\n")
	add(h(tar.TypeDir, "f/", 0o755, 0, ""), "")
	add(h(tar.TypeReg, "h/i", 0o644, 0, "i\n"), "i\n")
	add(h(tar.TypeReg, "h", 0o644, 0, "h\n"), "h\n")
	add(h(tar.TypeDir, "j/./k/", 0o700, 0, ""), "")
	add(h(tar.TypeReg, "p", 0o644, 0, "p\n"), "p\n")
	l := h(tar.TypeLink, "l", 0o604, 7, "")
	l.Linkname = "./p"
	add(l, "")
	s := h(tar.TypeSymlink, "s", 0o777, 0, "")
	s.Linkname = "p"
	add(s, "")
	sl := h(tar.TypeLink, "sl", 0o600, 8, "")
	sl.Linkname = "/s"
	add(sl, "")
	archive := b.bytes()

	for _, tc := range []struct {
		name  string
		owner *Owner
	}{{"archive owners", nil}, {"owner override", &Owner{UID: 42, GID: 42}}} {
		t.Run(tc.name, func(t *testing.T) {
			dest := t.TempDir()
			must(t, os.Chmod(dest, 0o755))
			must(t, Unpack(context.Background(), dest, bytes.NewReader(archive), tc.owner, ApplyOptions{}))
			id := func(u uint32) uint32 {
				if tc.owner != nil {
					return uint32(tc.owner.UID)
				}
				return u
			}
			type want struct {
				typ      string
				mode     os.FileMode
				uid      uint32
				size     int64
				nlink    uint64
				implicit bool // a missing parent: 0755 root whatever the owner
			}
			wants := map[string]want{
				"a":     {typ: "file", mode: 0o644, size: 2, nlink: 1},
				"b":     {typ: "file", mode: 0o600, size: 2, nlink: 1},
				"c":     {typ: "file", mode: 0o640, size: 2, nlink: 1},
				"d":     {typ: "dir", mode: 0o750},
				"e":     {typ: "file", mode: 0o600, size: 4, nlink: 1},
				"f":     {typ: "dir", mode: 0o755},
				"h":     {typ: "file", mode: 0o644, size: 2, nlink: 1},
				"j":     {typ: "dir", mode: 0o755, implicit: true},
				"j/k":   {typ: "dir", mode: 0o700},
				"x":     {typ: "dir", mode: 0o755, implicit: true},
				"x/y":   {typ: "dir", mode: 0o755, implicit: true},
				"x/y/z": {typ: "file", mode: 0o644, size: 2, nlink: 1},
				"p":     {typ: "file", mode: 0o604, uid: 7, size: 2, nlink: 2},
				"l":     {typ: "file", mode: 0o604, uid: 7, size: 2, nlink: 2},
				"s":     {typ: "symlink", uid: 8},
				"sl":    {typ: "symlink", uid: 8},
			}
			got := snapshotTree(t, dest)
			for rel, w := range wants {
				g, ok := got[rel]
				if !ok {
					t.Errorf("%s missing", rel)
					continue
				}
				uid := id(w.uid)
				if w.implicit {
					uid = 0
				}
				if g.Type != w.typ || g.Mode != w.mode || g.UID != uid || g.GID != uid || (w.typ == "file" && (g.Size != w.size || g.Nlink != w.nlink)) {
					t.Errorf("%s: got %s %v %d:%d size %d nlink %d, want %s %v %d:%d size %d nlink %d", rel, g.Type, g.Mode, g.UID, g.GID, g.Size, g.Nlink, w.typ, w.mode, uid, uid, w.size, w.nlink)
				}
			}
			for rel := range got {
				if _, ok := wants[rel]; !ok {
					t.Errorf("unexpected %s", rel)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(dest, "e")); string(b) != "two\n" {
				t.Errorf("e = %q, want the later entry's \"two\\n\"", b)
			}
			var st unix.Stat_t
			must(t, unix.Lstat(dest, &st))
			if st.Mode&0o7777 != 0o755 || st.Uid != 0 {
				t.Errorf("dest changed by a \".\" entry: mode %o owner %d", st.Mode&0o7777, st.Uid)
			}
		})
	}
}

// TestUnpackSlashEntry: an entry named "/" is the destination directory
// itself (BuildKit extracts in a chroot of it): a directory entry sets its
// owner (or --chown's), mode and times, and its entries land inside; any
// other type is an error that leaves the destination as it was.
func TestUnpackSlashEntry(t *testing.T) {
	requireRoot(t)
	mt := time.Date(2003, 4, 5, 6, 7, 8, 0, time.UTC)
	archive := newTB().
		header(&tar.Header{Typeflag: tar.TypeDir, Name: "/", Mode: 0o750, Uid: 1000, Gid: 1001, ModTime: mt}).
		file("/k", "k\n", 0o644).bytes()
	for _, tc := range []struct {
		name     string
		owner    *Owner
		uid, gid uint32
	}{{"archive owners", nil, 1000, 1001}, {"owner override", &Owner{UID: 42, GID: 43}, 42, 43}} {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "dest")
			must(t, os.Mkdir(dest, 0o1777))
			must(t, unix.Chmod(dest, 0o1777))
			must(t, Unpack(context.Background(), dest, bytes.NewReader(archive), tc.owner, ApplyOptions{}))
			var st unix.Stat_t
			must(t, unix.Lstat(dest, &st))
			if st.Mode&0o7777 != 0o750 || st.Uid != tc.uid || st.Gid != tc.gid || st.Mtim.Sec != mt.Unix() {
				t.Errorf("dest: mode %o owner %d:%d mtime %d, want 0750 %d:%d %d", st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec, tc.uid, tc.gid, mt.Unix())
			}
			if b, err := os.ReadFile(filepath.Join(dest, "k")); err != nil || string(b) != "k\n" {
				t.Errorf("k: %q %v", b, err)
			}
		})
	}
	t.Run("not a directory", func(t *testing.T) {
		dest := t.TempDir()
		mustWrite(t, filepath.Join(dest, "keep"), "keep", 0o644)
		// (archive/tar writes no file named "/"; "/." cleans to it)
		err := Unpack(context.Background(), dest, bytes.NewReader(newTB().file("/.", "x", 0o644).bytes()), nil, ApplyOptions{})
		if err == nil {
			t.Fatal("a file entry named \"/\" was accepted")
		}
		if _, err := os.Stat(filepath.Join(dest, "keep")); err != nil {
			t.Errorf("dest emptied: %v", err)
		}
	})
}
