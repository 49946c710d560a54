package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPruneUnchanged changes a two-layer overlay the ways that make overlayfs
// copy lower files up without changing them, and checks that only real
// changes stay in the upperdir — and that whiteouts and opaque directories of
// the lowers are honoured when looking for a file's counterpart.
func TestPruneUnchanged(t *testing.T) {
	requireRoot(t)
	bottom, top, upper, work, merged := overlayDirs(t)
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)          // as unpacked from a tar
	fine := time.Date(2021, 1, 2, 3, 4, 5, 123456789, time.UTC) // as made by a RUN
	for p, content := range map[string]string{
		"bin/busybox":  "the busybox binary",
		"etc/opened":   "opened for writing, nothing written",
		"etc/chmodded": "chmod 600 then 644",
		"etc/samesize": "content A",
		"etc/empty":    "",
		"gone":         "deleted by the top layer",
		"opq/f":        "hidden by the top layer's opaque dir",
		"lnk-target":   "x",
	} {
		mustWrite(t, filepath.Join(bottom, p), content, 0o644)
	}
	must(t, os.Symlink("lnk-target", filepath.Join(bottom, "lnk")))
	must(t, filepath.Walk(bottom, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return unix.Lutimes(p, []unix.Timeval{unix.NsecToTimeval(old.UnixNano()), unix.NsecToTimeval(old.UnixNano())})
	}))
	mustWrite(t, filepath.Join(top, "etc/fine"), "a file with a sub-second mtime", 0o644)
	must(t, os.Chtimes(filepath.Join(top, "etc/fine"), fine, fine))
	must(t, unix.Mknod(filepath.Join(top, "gone"), unix.S_IFCHR, 0))
	mustWrite(t, filepath.Join(top, "opq/new"), "top's own", 0o644)
	must(t, unix.Setxattr(filepath.Join(top, "opq"), "trusted.overlay.opaque", []byte("y"), 0))
	for _, d := range []string{"etc", "opq"} {
		st, err := os.Stat(filepath.Join(bottom, d))
		must(t, err)
		must(t, os.Chtimes(filepath.Join(top, d), st.ModTime(), st.ModTime()))
	}

	unmount := mountOverlay(t, []string{top, bottom}, upper, work, merged)
	m := func(p string) string { return filepath.Join(merged, p) }
	// copied up, unchanged
	must(t, os.Link(m("bin/busybox"), m("x")))
	for _, p := range []string{"etc/opened", "etc/empty", "etc/fine"} {
		f, err := os.OpenFile(m(p), os.O_WRONLY, 0)
		must(t, err)
		must(t, f.Close())
	}
	must(t, os.Chmod(m("etc/chmodded"), 0o600))
	must(t, os.Chmod(m("etc/chmodded"), 0o644))
	must(t, os.Lchown(m("lnk"), 0, 0))
	// real changes that look alike
	must(t, os.WriteFile(m("etc/samesize"), []byte("content B"), 0o644))
	must(t, os.Chtimes(m("etc/samesize"), old, old))
	mustWrite(t, m("gone"), "deleted by the top layer", 0o644) // what top deleted, made again
	must(t, os.Chtimes(m("gone"), old, old))
	mustWrite(t, m("opq/f"), "hidden by the top layer's opaque dir", 0o644) // hidden below an opaque dir
	must(t, os.Chtimes(m("opq/f"), old, old))
	unmount()

	must(t, PruneUnchanged(context.Background(), upper, []string{top, bottom}))

	var got []string
	must(t, filepath.Walk(upper, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(upper, p); rel != "." {
			got = append(got, rel)
		}
		return nil
	}))
	sort.Strings(got)
	want := []string{"etc", "etc/samesize", "gone", "opq", "opq/f", "x"}
	if !equalStrings(got, want) {
		t.Fatalf("upper after pruning: %q, want %q", got, want)
	}

	// The new hard link is a plain file in the layer now: the lower file it
	// points to is not duplicated.
	var buf bytes.Buffer
	must(t, WriteDiff(context.Background(), upper, &buf, DiffOptions{}))
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "x" && (h.Typeflag != tar.TypeReg || h.Size != int64(len("the busybox binary"))) {
			t.Errorf("x in the layer: type %c size %d, want a regular file of %d bytes", h.Typeflag, h.Size, len("the busybox binary"))
		}
		if h.Typeflag == tar.TypeLink {
			t.Errorf("layer has a hard link %s -> %s", h.Name, h.Linkname)
		}
	}
}

// TestPruneDirOverFile: bottom has a file /d, top a directory /d (a layer
// that replaced the file, unpacked without an opaque marker); a RUN writes
// /d/new. The file below the directory must not be looked into.
func TestPruneDirOverFile(t *testing.T) {
	requireRoot(t)
	bottom, top, upper, work, merged := overlayDirs(t)
	mustWrite(t, filepath.Join(bottom, "d"), "file", 0o644)
	mustWrite(t, filepath.Join(top, "d/x"), "x", 0o644)
	unmount := mountOverlay(t, []string{top, bottom}, upper, work, merged)
	mustWrite(t, filepath.Join(merged, "d/new"), "new", 0o644)
	unmount()
	must(t, PruneUnchanged(context.Background(), upper, []string{top, bottom}))
	if _, err := os.Lstat(filepath.Join(upper, "d/new")); err != nil {
		t.Errorf("new file d/new pruned: %v", err)
	}
}

// TestPruneKeepsXattrChange: an xattr-only change of a lower file
// (setfattr, setfacl) copies it up with the same stat: it is a change.
func TestPruneKeepsXattrChange(t *testing.T) {
	requireRoot(t)
	bottom, _, upper, work, merged := overlayDirs(t)
	mustWrite(t, filepath.Join(bottom, "f"), "file", 0o644)
	unmount := mountOverlay(t, []string{bottom}, upper, work, merged)
	must(t, unix.Setxattr(filepath.Join(merged, "f"), "user.test", []byte("1"), 0))
	unmount()
	must(t, PruneUnchanged(context.Background(), upper, []string{bottom}))
	if _, err := os.Lstat(filepath.Join(upper, "f")); err != nil {
		t.Errorf("xattr-only change pruned: %v", err)
	}
}

// TestPruneDirOverSymlink: bottom has /d -> e and /e/f, top a directory /d
// replacing the link; a RUN writes d/f identical to e/f (same bytes and
// mtime, as from a tar). It is new: no lookup may follow the lower symlink.
func TestPruneDirOverSymlink(t *testing.T) {
	requireRoot(t)
	bottom, top, upper, work, merged := overlayDirs(t)
	mustWrite(t, filepath.Join(bottom, "e/f"), "same", 0o644)
	must(t, os.Symlink("e", filepath.Join(bottom, "d")))
	must(t, os.Mkdir(filepath.Join(top, "d"), 0o755))
	unmount := mountOverlay(t, []string{top, bottom}, upper, work, merged)
	mustWrite(t, filepath.Join(merged, "d/f"), "same", 0o644)
	st, _ := os.Stat(filepath.Join(merged, "e/f"))
	must(t, os.Chtimes(filepath.Join(merged, "d/f"), st.ModTime(), st.ModTime()))
	unmount()
	must(t, PruneUnchanged(context.Background(), upper, []string{top, bottom}))
	if _, err := os.Lstat(filepath.Join(upper, "d/f")); err != nil {
		t.Errorf("new file d/f pruned (compared through the lower symlink with e/f): %v", err)
	}
}

func TestPruneUnchangedNoLowers(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "a"), "a", 0o644)
	must(t, PruneUnchanged(context.Background(), dir, nil))
	if _, err := os.Stat(filepath.Join(dir, "a")); err != nil {
		t.Fatalf("a file of a layer without lowers was removed: %v", err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// overlayDirs makes two lower dirs (bottom, top) and an overlay's upper,
// work and mount point dirs.
func overlayDirs(t *testing.T) (bottom, top, upper, work, merged string) {
	t.Helper()
	base := t.TempDir()
	dirs := []string{"bottom", "top", "upper", "work", "merged"}
	for i, d := range dirs {
		dirs[i] = filepath.Join(base, d)
		must(t, os.Mkdir(dirs[i], 0o755))
	}
	return dirs[0], dirs[1], dirs[2], dirs[3], dirs[4]
}
