package fscopy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// copyTree copies the whole of src to dest in a fresh rootfs, as
// `COPY . dest` does for a stage or image source (owners kept).
func copyTree(t *testing.T, src, dest string) string {
	t.Helper()
	rootfs := t.TempDir()
	if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, source(src), "/"), dest, Options{}); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	return rootfs
}

// The files of a large tree are copied in parallel; the result must not
// show it: every file's content, mode and mtime, every directory's mode and
// mtime (set once its contents are written, as BuildKit does), hardlinks
// kept as hardlinks and symlinks as symlinks.
func TestCopyTreeKeepsMetadata(t *testing.T) {
	src := t.TempDir()
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for d := range 6 {
		dir := filepath.Join(src, fmt.Sprintf("d%d", d), "sub")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 40 {
			p := filepath.Join(dir, fmt.Sprintf("f%02d", f))
			if err := os.WriteFile(p, []byte(fmt.Sprintf("file %d/%d\n", d, f)), 0o644); err != nil {
				t.Fatal(err)
			}
			if f%7 == 0 {
				if err := os.Chmod(p, 0o751); err != nil {
					t.Fatal(err)
				}
			}
			os.Chtimes(p, old.Add(time.Duration(f)*time.Second), old.Add(time.Duration(f)*time.Second))
		}
	}
	if err := os.Link(filepath.Join(src, "d0/sub/f01"), filepath.Join(src, "d5/hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/f02", filepath.Join(src, "d1/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "d3"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Directory times last: writing into a directory changes its mtime.
	for d := range 6 {
		for _, p := range []string{fmt.Sprintf("d%d/sub", d), fmt.Sprintf("d%d", d)} {
			ts := old.Add(time.Duration(d) * time.Hour)
			if err := os.Chtimes(filepath.Join(src, p), ts, ts); err != nil {
				t.Fatal(err)
			}
		}
	}

	rootfs := copyTree(t, src, "/app/")
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		got, err := os.Lstat(filepath.Join(rootfs, "app", rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		if got.Mode() != fi.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, got.Mode(), fi.Mode())
		}
		if !got.ModTime().Equal(fi.ModTime()) {
			t.Errorf("%s: mtime %v, want %v", rel, got.ModTime(), fi.ModTime())
		}
		if fi.Mode().IsRegular() {
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(filepath.Join(rootfs, "app", rel))
			if string(a) != string(b) {
				t.Errorf("%s: content %q, want %q", rel, b, a)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(filepath.Join(rootfs, "app/d0/sub/f01"))
	b, _ := os.Stat(filepath.Join(rootfs, "app/d5/hard"))
	if a.Sys().(*syscall.Stat_t).Ino != b.Sys().(*syscall.Stat_t).Ino {
		t.Errorf("hardlinked source files were copied as two files")
	}
	if l, err := os.Readlink(filepath.Join(rootfs, "app/d1/link")); err != nil || l != "sub/f02" {
		t.Errorf("symlink: %q %v", l, err)
	}
}

// A copy that fails half way (the destination filesystem fills up, while
// files are being written in parallel) returns the cause once every copy in
// flight has stopped, so the caller can unmount.
func TestCopyTreeDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	src := t.TempDir()
	data := make([]byte, 64<<10)
	for f := range 64 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rootfs := t.TempDir()
	if err := unix.Mount("tmpfs", rootfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(rootfs, unix.MNT_DETACH) })
	_, err := Copy(context.Background(), Target{Root: rootfs}, items(t, source(src), "/"), "/app/", Options{})
	if !errors.Is(err, unix.ENOSPC) {
		t.Errorf("copy onto a full filesystem: %v, want ENOSPC", err)
	}
	// Busy would mean a copy still had a file open.
	if err := unix.Unmount(rootfs, 0); err != nil {
		t.Fatalf("unmount after the failed copy: %v", err)
	}
}

func TestCopyTreeCancelled(t *testing.T) {
	src := t.TempDir()
	for f := range 20 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", f)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Copy(ctx, Target{Root: t.TempDir()}, items(t, source(src), "/"), "/app/", Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled copy: %v, want context.Canceled", err)
	}
}

// Two sources with the same name: the later one wins, as in Docker, even
// though files are written in parallel.
func TestCopyLaterSourceWins(t *testing.T) {
	src := t.TempDir()
	for _, d := range []string{"x", "y", "z"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, d, "a.txt"), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rootfs := t.TempDir()
	its := items(t, source(src), "/x/a.txt", "/y/a.txt", "/z", "/x")
	if _, err := Copy(context.Background(), Target{Root: rootfs}, its, "/d/", Options{}); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "d/a.txt")); err != nil || string(b) != "x" {
		t.Errorf("d/a.txt = %q, %v; want the last source's (x)", b, err)
	}
}

// writeTree writes files (absolute path → content, mode 0755, parents
// made as needed).
func writeTree(t *testing.T, files map[string]string) {
	t.Helper()
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// Files of an immutable source (store layers) are hardlinked into the new
// snapshot when the copy would give them the same owner, mode and mtime and
// both are on one filesystem; otherwise they are copied.
func TestCopyLinksFromLayers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlayfs, tmpfs, linkat by descriptor)")
	}
	base := t.TempDir()
	lower, upper, view := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "view")
	writeTree(t, map[string]string{
		lower + "/bin/tool":   "lower tool",
		lower + "/bin/shadow": "lower version",
		lower + "/bin/gone":   "deleted above",
		upper + "/bin/shadow": "upper version",
		upper + "/bin/new":    "only above",
	})
	if err := unix.Mknod(upper+"/bin/gone", unix.S_IFCHR, 0); err != nil { // whiteout
		t.Fatal(err)
	}
	if err := os.Mkdir(view, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("overlay", view, "overlay", unix.MS_RDONLY, "lowerdir="+upper+":"+lower); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(view, unix.MNT_DETACH) })

	copyFrom := func(rootfs string, o Options) {
		t.Helper()
		src := &Source{Root: view, KeepOwner: true, Name: "stage test", Layers: []string{lower, upper}}
		if _, err := Copy(context.Background(), Target{Root: rootfs}, items(t, src, "/bin"), "/bin/", o); err != nil {
			t.Fatalf("Copy: %v", err)
		}
	}

	rootfs := filepath.Join(base, "snap")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFrom(rootfs, Options{})
	for name, from := range map[string]string{"tool": lower, "shadow": upper, "new": upper} {
		if inode(t, filepath.Join(rootfs, "bin", name)) != inode(t, filepath.Join(from, "bin", name)) {
			t.Errorf("/bin/%s was not hardlinked to %s's file", name, filepath.Base(from))
		}
	}
	if got := fileText(t, filepath.Join(rootfs, "bin/shadow")); got != "upper version" {
		t.Errorf("/bin/shadow = %q, want the upper layer's", got)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "bin/gone")); !os.IsNotExist(err) {
		t.Errorf("a whited-out file was copied: %v", err)
	}

	// --chmod gives the copy another mode: copied, not linked.
	chmodded := filepath.Join(base, "chmod")
	if err := os.Mkdir(chmodded, 0o755); err != nil {
		t.Fatal(err)
	}
	cm, err := ParseChmod("0600")
	if err != nil {
		t.Fatal(err)
	}
	copyFrom(chmodded, Options{Chmod: cm})
	if inode(t, filepath.Join(chmodded, "bin/tool")) == inode(t, filepath.Join(lower, "bin/tool")) {
		t.Error("--chmod copy was hardlinked: the layer's file changed mode")
	}
	if fi, _ := os.Stat(filepath.Join(lower, "bin/tool")); fi.Mode().Perm() != 0o755 {
		t.Errorf("the layer's file has mode %v now", fi.Mode().Perm())
	}

	// Another filesystem: copied.
	other := filepath.Join(base, "tmpfs")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", other, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(other, unix.MNT_DETACH) })
	copyFrom(other, Options{})
	if got := fileText(t, filepath.Join(other, "bin/tool")); got != "lower tool" {
		t.Errorf("copy onto tmpfs: %q", got)
	}
}

// Through a writable overlay mount the links are made in the upper
// directory after the unmount, over empty placeholders the copy created
// through the mount: the destination path resolves through the snapshot's
// own layers (here a symlink in its lower layer), a later source that
// writes the same path wins, and a layer file that changed before the
// links are made is copied into its placeholder instead.
func TestCopyLinksThroughOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlayfs, linkat by descriptor)")
	}
	base := t.TempDir()
	src, view := filepath.Join(base, "src"), filepath.Join(base, "view")
	dlower, dupper, dwork, merged := filepath.Join(base, "dlower"), filepath.Join(base, "dupper"), filepath.Join(base, "dwork"), filepath.Join(base, "merged")
	writeTree(t, map[string]string{
		src + "/bin/tool":  "tool",
		src + "/bin/other": "other",
		src + "/bin/later": "from the layer",
		dlower + "/opt/x":  "lower of the snapshot",
	})
	if err := os.MkdirAll(dlower+"/usr", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../opt", dlower+"/usr/local"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{view, dupper, dwork, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A read-only view of the source layer (two layers are needed for an
	// overlay; the second is empty).
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("overlay", view, "overlay", unix.MS_RDONLY, "lowerdir="+empty+":"+src); err != nil {
		t.Fatalf("mount view: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(view, unix.MNT_DETACH) })
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+dlower+",upperdir="+dupper+",workdir="+dwork); err != nil {
		t.Fatalf("mount snapshot: %v", err)
	}
	mountedSnap := true
	t.Cleanup(func() {
		if mountedSnap {
			_ = unix.Unmount(merged, unix.MNT_DETACH)
		}
	})

	its := items(t, &Source{Root: view, KeepOwner: true, Name: "stage test", Layers: []string{src, empty}}, "/bin")
	// The second item writes /usr/local/bin/later again, from a directory
	// that is not a layer: it must win over the first item's placeholder.
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "later"), []byte("from the context"), 0o644); err != nil {
		t.Fatal(err)
	}
	more := items(t, &Source{Root: ctxDir, Name: "context"}, "/later")
	finish, err := Copy(context.Background(), Target{Root: merged, Upper: dupper}, append(its, more...), "/usr/local/bin/", Options{})
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if finish == nil {
		t.Fatal("no links deferred through the overlay")
	}
	if fi, err := os.Stat(filepath.Join(merged, "opt/bin/tool")); err != nil || fi.Size() != 0 {
		t.Fatalf("placeholder through the mount: %v %v", fi, err)
	}
	if err := unix.Unmount(merged, 0); err != nil {
		t.Fatal(err)
	}
	mountedSnap = false
	// The layer's /bin/other is replaced (new inode, same bytes) before the
	// links are made: it must be copied, not linked.
	if err := unix.Unmount(view, 0); err != nil {
		t.Fatal(err)
	}
	otherPath := src + "/bin/other"
	if err := os.WriteFile(otherPath+".new", []byte("other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(otherPath+".new", otherPath); err != nil { // a new inode for sure
		t.Fatal(err)
	}
	if err := finish(); err != nil {
		t.Fatalf("finish: %v", err)
	}
	if inode(t, dupper+"/opt/bin/tool") != inode(t, src+"/bin/tool") || fileText(t, dupper+"/opt/bin/tool") != "tool" {
		t.Error("/usr/local/bin/tool (upper opt/bin/tool) is not linked to the layer's file")
	}
	if fileText(t, dupper+"/opt/bin/other") != "other" || inode(t, dupper+"/opt/bin/other") == inode(t, otherPath) {
		t.Error("a changed layer file was linked, or its placeholder not filled")
	}
	if fileText(t, dupper+"/opt/bin/later") != "from the context" {
		t.Errorf("later source lost: %q", fileText(t, dupper+"/opt/bin/later"))
	}
	ents, _ := os.ReadDir(dupper + "/opt/bin")
	if len(ents) != 3 {
		t.Errorf("upper opt/bin holds %d entries, want tool, other, later (no temporary names)", len(ents))
	}
}

// fileText returns the content of the file at p.
func fileText(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
