package layer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// overlayChange is a lower layer, the upperdir of a step that changed it, and
// the merged view as the step saw it.
type overlayChange struct {
	base, lower, upper string
	merged             map[string]node
}

// makeOverlayChange builds a lower dir, mounts an overlay over it, changes
// things through the merged dir (delete, rm -rf + recreate, hardlinks,
// symlink, setuid, chmod, chown, xattr, devices) and unmounts.
func makeOverlayChange(t *testing.T) overlayChange {
	t.Helper()
	requireRoot(t)
	base := t.TempDir()
	c := overlayChange{base: base, lower: filepath.Join(base, "lower"), upper: filepath.Join(base, "upper")}
	work, merged := filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{c.lower, c.upper, work, merged} {
		must(t, os.Mkdir(d, 0o755))
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for p, content := range map[string]string{
		"bin/sh":        "#!shell",
		"etc/hosts":     "127.0.0.1 localhost\n",
		"etc/passwd":    "root:x:0:0:root:/root:/bin/sh\n",
		"data/old":      "old data",
		"data/sub/deep": "deep",
		"rmme":          "remove me",
		"keep/file":     "kept",
	} {
		mode := os.FileMode(0o644)
		if p == "bin/sh" {
			mode = 0o755
		}
		mustWrite(t, filepath.Join(c.lower, p), content, mode)
	}
	must(t, filepath.Walk(c.lower, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	}))

	unmount := mountOverlay(t, []string{c.lower}, c.upper, work, merged)
	m := func(p string) string { return filepath.Join(merged, p) }
	must(t, os.Remove(m("rmme")))
	must(t, os.RemoveAll(m("data")))
	must(t, os.Mkdir(m("data"), 0o750))
	must(t, os.Chmod(m("data"), 0o750))
	mustWrite(t, m("data/new"), "new data", 0o644)
	must(t, unix.Setxattr(m("data/new"), "user.test", []byte("hello"), 0))
	must(t, os.Mkdir(m("hl"), 0o755))
	must(t, os.Chmod(m("hl"), 0o755))
	mustWrite(t, m("hl/a"), "same inode", 0o644)
	must(t, os.Link(m("hl/a"), m("hl/b")))
	must(t, os.Lchown(m("hl/a"), 1000, 1000))
	must(t, os.Symlink("../etc/passwd", m("bin/lnk")))
	mustWrite(t, m("bin/suid"), "setuid", 0o755)
	must(t, os.Chmod(m("bin/suid"), 0o755|os.ModeSetuid))
	must(t, os.Chmod(m("etc/hosts"), 0o600))
	must(t, unix.Mkfifo(m("bin/fifo"), 0o644))
	must(t, os.Chmod(m("bin/fifo"), 0o644))
	must(t, unix.Mknod(m("bin/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.Chmod(m("bin/null"), 0o666))
	must(t, os.Mkdir(m("tmp"), 0o755))
	must(t, os.Chmod(m("tmp"), 0o777|os.ModeSticky))
	c.merged = snapshotTree(t, merged)
	unmount()
	return c
}

func TestWriteDiffOverlay(t *testing.T) {
	c := makeOverlayChange(t)
	ctx := context.Background()
	var buf bytes.Buffer
	must(t, WriteDiff(ctx, c.upper, &buf, DiffOptions{}))
	got, hdrs := readTar(t, buf.Bytes())

	want := []tarEntry{
		{Name: ".wh.rmme", Type: '0', Mode: 0},
		{Name: "bin/", Type: '5', Mode: 0o755},
		{Name: "bin/fifo", Type: '6', Mode: 0o644},
		{Name: "bin/lnk", Type: '2', Mode: 0o777, Link: "../etc/passwd"},
		{Name: "bin/null", Type: '3', Mode: 0o666, Major: 1, Minor: 3},
		{Name: "bin/suid", Type: '0', Mode: 0o4755, Size: 6},
		{Name: "data/", Type: '5', Mode: 0o750},
		{Name: "data/.wh..wh..opq", Type: '0', Mode: 0},
		{Name: "data/new", Type: '0', Mode: 0o644, Size: 8, Xattrs: "user.test=hello"},
		{Name: "etc/", Type: '5', Mode: 0o755},
		{Name: "etc/hosts", Type: '0', Mode: 0o600, Size: 20},
		{Name: "hl/", Type: '5', Mode: 0o755},
		{Name: "hl/a", Type: '0', Mode: 0o644, UID: 1000, GID: 1000, Size: 10},
		{Name: "hl/b", Type: '1', Mode: 0o644, UID: 1000, GID: 1000, Link: "hl/a"},
		{Name: "tmp/", Type: '5', Mode: 0o1777},
	}
	if len(got) != len(want) {
		t.Errorf("got %d entries, want %d", len(got), len(want))
	}
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i].String()
		}
		if i < len(want) {
			w = want[i].String()
		}
		if g != w {
			t.Errorf("entry %d:\n got  %s\n want %s", i, g, w)
		}
	}
	for _, h := range hdrs {
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: Uname/Gname %q/%q, want empty", h.Name, h.Uname, h.Gname)
		}
		if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: atime/ctime written", h.Name)
		}
		if h.ModTime.Nanosecond() != 0 {
			t.Errorf("%s: mtime %v not truncated to seconds", h.Name, h.ModTime)
		}
		for k := range h.PAXRecords {
			if strings.Contains(k, "overlay") {
				t.Errorf("%s: overlay xattr %s leaked into the layer", h.Name, k)
			}
		}
	}

	// Same bytes twice.
	var again bytes.Buffer
	must(t, WriteDiff(ctx, c.upper, &again, DiffOptions{}))
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("WriteDiff is not deterministic")
	}

	// Epoch clamps every mtime.
	epoch := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	var clamped bytes.Buffer
	must(t, WriteDiff(ctx, c.upper, &clamped, DiffOptions{Epoch: &epoch}))
	_, chdrs := readTar(t, clamped.Bytes())
	for _, h := range chdrs {
		if h.ModTime.After(epoch) {
			t.Errorf("%s: mtime %v after epoch %v", h.Name, h.ModTime, epoch)
		}
		if h.Name == "bin/suid" && !h.ModTime.Equal(epoch) {
			t.Errorf("%s: mtime %v, want clamped to %v", h.Name, h.ModTime, epoch)
		}
		if h.Name == "etc/hosts" && !h.ModTime.Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) {
			t.Errorf("%s: mtime %v, want unchanged lower mtime 2020-01-02", h.Name, h.ModTime)
		}
	}
}

func TestApplyRoundTripOverlay(t *testing.T) {
	c := makeOverlayChange(t)
	ctx := context.Background()
	var tarBuf bytes.Buffer
	must(t, WriteDiff(ctx, c.upper, &tarBuf, DiffOptions{}))

	for _, comp := range []Compression{Uncompressed, Gzip, Zstd} {
		t.Run(string(comp), func(t *testing.T) {
			var blob bytes.Buffer
			b, _, err := Commit(ctx, c.upper, &blob, comp, DiffOptions{})
			must(t, err)
			dir := filepath.Join(t.TempDir(), "applied")
			must(t, os.Mkdir(dir, 0o755))
			diffID, err := Apply(ctx, dir, bytes.NewReader(blob.Bytes()), ApplyOptions{})
			must(t, err)
			if diffID != b.DiffID || diffID != digest.FromBytes(tarBuf.Bytes()) {
				t.Errorf("Apply diffID %s, Commit DiffID %s, sha256(tar) %s", diffID, b.DiffID, digest.FromBytes(tarBuf.Bytes()))
			}

			// Lowerdir form on disk.
			var st unix.Stat_t
			must(t, unix.Lstat(filepath.Join(dir, "rmme"), &st))
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("rmme: mode %#o rdev %d, want whiteout char 0/0", st.Mode, st.Rdev)
			}
			if v, err := getXattr(filepath.Join(dir, "data"), "trusted.overlay.opaque"); err != nil || string(v) != "y" {
				t.Errorf("data: trusted.overlay.opaque = %q, %v; want y", v, err)
			}
			if _, err := os.Lstat(filepath.Join(dir, "data", whiteoutOpaque)); !os.IsNotExist(err) {
				t.Errorf("opaque marker written as a file: %v", err)
			}

			merged := filepath.Join(t.TempDir(), "merged")
			must(t, os.Mkdir(merged, 0o755))
			mountOverlay(t, []string{dir, c.lower}, "", "", merged)
			got := snapshotTree(t, merged)
			for _, d := range diffSnapshots(c.merged, got) {
				t.Error(d)
			}
			for _, gone := range []string{"rmme", "data/old", "data/sub"} {
				if _, ok := got[gone]; ok {
					t.Errorf("%s visible in the merged view, want deleted", gone)
				}
			}
		})
	}
}

// TestWriteDiffPlainDir covers a directory that is not an overlay upper (e.g.
// a copy-based snapshot), long names and big ids that need PAX.
func TestWriteDiffPlainDir(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 150)
	mustWrite(t, filepath.Join(dir, "a", long), "long", 0o644)
	mustWrite(t, filepath.Join(dir, "a-b"), "dash", 0o644)
	mustWrite(t, filepath.Join(dir, "a", "b"), "b", 0o644)
	must(t, unix.Mkfifo(filepath.Join(dir, "a", "sock-ish"), 0o600))
	if os.Geteuid() == 0 {
		must(t, os.Lchown(filepath.Join(dir, "a-b"), 3000000, 3000001))
	}
	var buf bytes.Buffer
	must(t, WriteDiff(context.Background(), dir, &buf, DiffOptions{}))
	got, _ := readTar(t, buf.Bytes())
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
	}
	want := []string{"a/", "a/b", "a/sock-ish", "a/" + long, "a-b"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("names %q, want %q", names, want)
	}
	if os.Geteuid() == 0 && (got[4].UID != 3000000 || got[4].GID != 3000001) {
		t.Errorf("a-b owner %d:%d, want 3000000:3000001", got[4].UID, got[4].GID)
	}
	sum := sha256.Sum256(buf.Bytes())
	var again bytes.Buffer
	must(t, WriteDiff(context.Background(), dir, &again, DiffOptions{}))
	if sha256.Sum256(again.Bytes()) != sum {
		t.Error("not deterministic")
	}
}

func TestWriteDiffRejectsRedirect(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "moved"), 0o755))
	must(t, unix.Setxattr(filepath.Join(dir, "moved"), "trusted.overlay.redirect", []byte("/orig"), 0))
	err := WriteDiff(context.Background(), dir, &bytes.Buffer{}, DiffOptions{})
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("err = %v, want redirect error", err)
	}
}

func TestWriteDiffCanceled(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "f"), "x", 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteDiff(ctx, dir, &bytes.Buffer{}, DiffOptions{}); err == nil {
		t.Error("want context error")
	}
}

// A plain file named ".wh.*" (not an overlay whiteout) would be read back as a
// whiteout by every unpacker: WriteDiff refuses it, naming the file, while a
// real whiteout (char device 0/0) next to it is still fine.
func TestWriteDiffRejectsWhiteoutNames(t *testing.T) {
	for _, name := range []string{".wh.etc", "d/.wh..wh..opq", "d/.wh.x"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			mustWrite(t, filepath.Join(dir, "d", "f"), "f", 0o644)
			mustWrite(t, filepath.Join(dir, name), "x", 0o644)
			err := WriteDiff(context.Background(), dir, &bytes.Buffer{}, DiffOptions{})
			if !errors.Is(err, ErrWhiteoutName) || !strings.Contains(err.Error(), "/"+name) {
				t.Errorf("err = %v, want ErrWhiteoutName naming /%s", err, name)
			}
		})
	}
	t.Run("dir", func(t *testing.T) {
		dir := t.TempDir()
		must(t, os.MkdirAll(filepath.Join(dir, ".wh.bin"), 0o755))
		if err := WriteDiff(context.Background(), dir, &bytes.Buffer{}, DiffOptions{}); !errors.Is(err, ErrWhiteoutName) {
			t.Errorf("err = %v, want ErrWhiteoutName", err)
		}
	})
}
