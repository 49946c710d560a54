package testsuite

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// capNetBind is a security.capability value (VFS_CAP_REVISION_2, effective,
// cap_net_bind_service permitted), one the kernel accepts.
const capNetBind = "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// base is the parents every scenario starts from: two layers with files,
// directories, a symlink, names linked in one layer, xattrs, owners, a setuid
// file, a device and a fifo, and in the top layer a changed file, whiteouts
// of a file and a directory, an opaque directory, a file over a directory
// and a directory over a file.
func base() [][]entry {
	return [][]entry{{
		dir("etc"),
		file("etc/passwd", "root:x:0:0\n"),
		file("etc/group", "root:x:0:\n"),
		file("a/x", "x"), file("a/y", "y"), file("a/sub/z", "z"),
		file("f", "f"),
		file("d/child", "c"),
		symlink("l", "f"),
		file("bin/tool", "tool", mode(0o755)), hardlink("bin/tool2", "bin/tool"),
		file("cap", "c", xattr("security.capability", capNetBind), xattr("user.note", "hello")),
		file("owned", "o", owner(1000, 1000), mode(0o600)),
		file("suid", "s", mode(0o4755)),
		chardev("dev/null", 1, 3), fifo("dev/pipe"),
		file("opq/old", "old"),
		file("tdir/inner", "i"),
		file("tfile", "t"),
		file("gone/x", "x"),
	}, {
		file("etc/passwd", "root:x:0:0\nuser:x:1000:1000\n"),
		whiteout("etc/group"),
		dir("opq"), opaque("opq"), file("opq/new", "new"),
		file("tdir", "now a file"),
		file("tfile/inner", "i2"),
		whiteout("gone"),
		file("bin/tool3", "t3"),
	}}
}

// scenario is one change to a snapshot of base and the layer it must give.
type scenario struct {
	name   string
	change func(t *testing.T, root string)
	// want is the diff's layer tar as listDiff describes it.
	want []string
}

// scenarios lists the changes every snapshotter is tested with.
//
// Long: it is a table, one entry per scenario; split up it would only
// scatter the cases.
func scenarios() []scenario {
	return []scenario{
		{"Nothing", func(*testing.T, string) {}, nil},
		{"AddFile", func(t *testing.T, r string) { write(t, r, "new", "n") },
			[]string{`new file 644 0:0 now "n"`}},
		{"ModifyInPlace", func(t *testing.T, r string) { appendTo(t, r, "etc/passwd", "x\n") },
			[]string{`etc/ dir 755 0:0`, `etc/passwd file 644 0:0 now "root:x:0:0\nuser:x:1000:1000\nx\n"`}},
		{"ModifyDeep", func(t *testing.T, r string) { appendTo(t, r, "a/sub/z", "z") },
			[]string{`a/ dir 755 0:0`, `a/sub/ dir 755 0:0`, `a/sub/z file 644 0:0 now "zz"`}},
		{"DeleteFile", func(t *testing.T, r string) { remove(t, r, "etc/passwd") },
			[]string{`etc/ dir 755 0:0 now`, `etc/.wh.passwd`}},
		{"DeleteTree", func(t *testing.T, r string) { remove(t, r, "a") },
			[]string{`.wh.a`}},
		{"EmptyDir", func(t *testing.T, r string) { remove(t, r, "a/x", "a/y", "a/sub") },
			[]string{`a/ dir 755 0:0 now`, `a/.wh.sub`, `a/.wh.x`, `a/.wh.y`}},
		{"RecreateDir", func(t *testing.T, r string) {
			remove(t, r, "a")
			mkdir(t, r, "a")
			write(t, r, "a/x", "new")
		}, []string{`a/ dir 755 0:0 now`, `a/.wh..wh..opq`, `a/x file 644 0:0 now "new"`}},
		{"FileOverDir", func(t *testing.T, r string) { remove(t, r, "d"); write(t, r, "d", "file") },
			[]string{`d file 644 0:0 now "file"`}},
		{"DirOverFile", func(t *testing.T, r string) { remove(t, r, "f"); mkdir(t, r, "f"); write(t, r, "f/inner", "i") },
			[]string{`f/ dir 755 0:0 now`, `f/.wh..wh..opq`, `f/inner file 644 0:0 now "i"`}},
		{"DirOverLayerFile", func(t *testing.T, r string) { remove(t, r, "tdir"); mkdir(t, r, "tdir") },
			[]string{`tdir/ dir 755 0:0 now`, `tdir/.wh..wh..opq`}},
		{"FileOverLayerDir", func(t *testing.T, r string) { remove(t, r, "tfile"); write(t, r, "tfile", "t") },
			[]string{`tfile file 644 0:0 now "t"`}},
		{"DirOverSymlink", func(t *testing.T, r string) { remove(t, r, "l"); mkdir(t, r, "l") },
			[]string{`l/ dir 755 0:0 now`, `l/.wh..wh..opq`}},
		{"RetargetSymlink", func(t *testing.T, r string) { remove(t, r, "l"); must(t, os.Symlink("etc", filepath.Join(r, "l"))) },
			[]string{`l symlink 777 0:0 now -> etc`}},
		{"NewHardlinks", func(t *testing.T, r string) {
			write(t, r, "n1", "linked")
			must(t, os.Link(filepath.Join(r, "n1"), filepath.Join(r, "n2")))
		}, []string{`n1 file 644 0:0 now "linked"`, `n2 link 644 0:0 now -> n1`}},
		{"LinkToLowerFile", func(t *testing.T, r string) { must(t, os.Link(filepath.Join(r, "f"), filepath.Join(r, "f2"))) },
			[]string{`f2 file 644 0:0 "f"`}},
		{"RenameFile", func(t *testing.T, r string) {
			must(t, os.Rename(filepath.Join(r, "etc/passwd"), filepath.Join(r, "etc/passwd.new")))
		}, []string{`etc/ dir 755 0:0 now`, `etc/.wh.passwd`, `etc/passwd.new file 644 0:0 "root:x:0:0\nuser:x:1000:1000\n"`}},
		{"RecreateIdentical", func(t *testing.T, r string) {
			remove(t, r, "f")
			write(t, r, "f", "f")
			must(t, os.Chtimes(filepath.Join(r, "f"), t0, t0))
		}, nil},
		{"ChmodBackAndForth", func(t *testing.T, r string) {
			must(t, os.Chmod(filepath.Join(r, "f"), 0o600))
			must(t, os.Chmod(filepath.Join(r, "f"), 0o644))
		}, nil},
		{"TouchDirChild", func(t *testing.T, r string) { write(t, r, "d/tmp", "x"); remove(t, r, "d/tmp") }, nil},
		{"Chmod", func(t *testing.T, r string) { must(t, os.Chmod(filepath.Join(r, "f"), 0o600)) },
			[]string{`f file 600 0:0 "f"`}},
		{"Chown", func(t *testing.T, r string) { must(t, os.Lchown(filepath.Join(r, "owned"), 0, 0)) },
			[]string{`owned file 600 0:0 "o"`}},
		{"ChownSymlink", func(t *testing.T, r string) { must(t, os.Lchown(filepath.Join(r, "l"), 7, 7)) },
			[]string{`l symlink 777 7:7 -> f`}},
		{"Setuid", func(t *testing.T, r string) {
			must(t, os.Lchown(filepath.Join(r, "suid"), 1, 1))
			must(t, unix.Chmod(filepath.Join(r, "suid"), 0o4755))
		}, []string{`suid file 4755 1:1 "s"`}},
		{"DirMode", func(t *testing.T, r string) { must(t, os.Chmod(filepath.Join(r, "d"), 0o700)) },
			[]string{`d/ dir 700 0:0`}},
		{"Mtime", func(t *testing.T, r string) {
			must(t, os.Chtimes(filepath.Join(r, "f"), time.Unix(1234567890, 0), time.Unix(1234567890, 0)))
		}, []string{`f file 644 0:0 t=1234567890 "f"`}},
		{"AddXattr", func(t *testing.T, r string) {
			must(t, unix.Lsetxattr(filepath.Join(r, "f"), "user.new", []byte("v"), 0))
		},
			[]string{`f file 644 0:0 "f" user.new="v"`}},
		{"RemoveXattr", func(t *testing.T, r string) { must(t, unix.Lremovexattr(filepath.Join(r, "cap"), "user.note")) },
			[]string{`cap file 644 0:0 "c" security.capability="` + quoted(capNetBind) + `"`}},
		{"SetCapability", func(t *testing.T, r string) {
			must(t, unix.Lsetxattr(filepath.Join(r, "f"), "security.capability", []byte(capNetBind), 0))
		}, []string{`f file 644 0:0 "f" security.capability="` + quoted(capNetBind) + `"`}},
		{"DirXattr", func(t *testing.T, r string) {
			must(t, unix.Lsetxattr(filepath.Join(r, "d"), "user.dir", []byte("1"), 0))
		},
			[]string{`d/ dir 755 0:0 user.dir="1"`}},
		{"Devices", func(t *testing.T, r string) {
			must(t, unix.Mknod(filepath.Join(r, "dev/zero"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
			must(t, unix.Chmod(filepath.Join(r, "dev/zero"), 0o666))
			must(t, unix.Mkfifo(filepath.Join(r, "fifo"), 0o600))
			must(t, unix.Chmod(filepath.Join(r, "fifo"), 0o640))
			remove(t, r, "dev/pipe")
		}, []string{`dev/ dir 755 0:0 now`, `dev/.wh.pipe`, `dev/zero char 666 0:0 now 1,5`, `fifo fifo 640 0:0 now`}},
		{"DeleteInOpaqueDir", func(t *testing.T, r string) { remove(t, r, "opq/new") },
			[]string{`opq/ dir 755 0:0 now`, `opq/.wh.new`}},
		{"FileOverLowerWhiteout", func(t *testing.T, r string) { write(t, r, "etc/group", "g") },
			[]string{`etc/ dir 755 0:0 now`, `etc/group file 644 0:0 now "g"`}},
		{"DirOverLowerWhiteout", func(t *testing.T, r string) { mkdir(t, r, "gone"); write(t, r, "gone/y", "y") },
			[]string{`gone/ dir 755 0:0 now`, `gone/y file 644 0:0 now "y"`}},
		{"NewTree", func(t *testing.T, r string) {
			mkdir(t, r, "new")
			mkdir(t, r, "new/a")
			write(t, r, "new/a/f", "deep")
			must(t, os.Symlink("a/f", filepath.Join(r, "new/l")))
		}, []string{`new/ dir 755 0:0 now`, `new/a/ dir 755 0:0 now`, `new/a/f file 644 0:0 now "deep"`, `new/l symlink 777 0:0 now -> a/f`}},
		{"SameSizeAndMtime", func(t *testing.T, r string) {
			must(t, os.WriteFile(filepath.Join(r, "f"), []byte("F"), 0o644))
			must(t, os.Chtimes(filepath.Join(r, "f"), t0, t0))
		}, []string{`f file 644 0:0 "F"`}},
		{"ReplaceLinkedName", func(t *testing.T, r string) {
			write(t, r, "bin/new", "new tool")
			must(t, os.Chmod(filepath.Join(r, "bin/new"), 0o755))
			must(t, os.Rename(filepath.Join(r, "bin/new"), filepath.Join(r, "bin/tool")))
		}, []string{`bin/ dir 755 0:0 now`, `bin/tool file 755 0:0 now "new tool"`}},
		{"DeleteLinkedName", func(t *testing.T, r string) { remove(t, r, "bin/tool2") },
			[]string{`bin/ dir 755 0:0 now`, `bin/.wh.tool2`}},
		{"EmptyNewDir", func(t *testing.T, r string) { mkdir(t, r, "e") },
			[]string{`e/ dir 755 0:0 now`}},
		{"SymlinkOverDir", func(t *testing.T, r string) { remove(t, r, "a"); must(t, os.Symlink("d", filepath.Join(r, "a"))) },
			[]string{`a symlink 777 0:0 now -> d`}},
		{"Socket", func(t *testing.T, r string) {
			l, err := net.Listen("unix", filepath.Join(r, "d/sock"))
			must(t, err)
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			must(t, l.Close())
		}, []string{`d/ dir 755 0:0 now`}},
		{"MergedDir", func(t *testing.T, r string) { appendTo(t, r, "bin/tool3", "!") },
			[]string{`bin/ dir 755 0:0`, `bin/tool3 file 644 0:0 now "t3!"`}},
	}
}

// quoted is s as %q writes it, without the quotes.
func quoted(s string) string { q := strconv.Quote(s); return q[1 : len(q)-1] }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, root, rel, body string) {
	t.Helper()
	p := filepath.Join(root, rel)
	must(t, os.WriteFile(p, []byte(body), 0o644))
	must(t, os.Chmod(p, 0o644))
}

func appendTo(t *testing.T, root, rel, body string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(root, rel), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString(body)
	must(t, err)
	must(t, f.Close())
}

func mkdir(t *testing.T, root, rel string) {
	t.Helper()
	p := filepath.Join(root, rel)
	must(t, os.Mkdir(p, 0o755))
	must(t, os.Chmod(p, 0o755))
}

func remove(t *testing.T, root string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		must(t, os.RemoveAll(filepath.Join(root, rel)))
	}
}
