package layer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlayfs mounts, mknod, chown, trusted.* xattrs); run the tests as root")
	}
}

// mountOverlay mounts an overlay on merged and unmounts it at cleanup (or
// earlier through the returned func, which is idempotent). upper and work may
// be empty for a read-only stack of lowers (first = topmost).
func mountOverlay(t testing.TB, lowers []string, upper, work, merged string) (unmount func()) {
	t.Helper()
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if upper != "" {
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	opts += ",redirect_dir=off,metacopy=off,index=off"
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Skipf("cannot mount overlayfs (%s): %v", opts, err)
	}
	mounted := true
	unmount = func() {
		if !mounted {
			return
		}
		if err := unix.Unmount(merged, 0); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
			if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
				t.Errorf("lazy unmount %s: %v", merged, err)
			}
		}
		mounted = false
	}
	t.Cleanup(unmount)
	return unmount
}

// node is what a test compares of one filesystem entry.
type node struct {
	Type   string
	Mode   os.FileMode
	UID    uint32
	GID    uint32
	Size   int64
	SHA    string
	Link   string
	Rdev   uint64
	Nlink  uint64
	Mtime  int64
	Xattrs string
}

// snapshotTree records every entry below root (root itself excluded).
func snapshotTree(t testing.TB, root string) map[string]node {
	t.Helper()
	out := make(map[string]node)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := node{
			Mode:  os.FileMode(st.Mode & 0o7777),
			UID:   st.Uid,
			GID:   st.Gid,
			Mtime: st.Mtim.Sec,
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			n.Type = "dir"
		case unix.S_IFREG:
			n.Type = "file"
			n.Size = st.Size
			n.Nlink = uint64(st.Nlink)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			n.SHA = hex.EncodeToString(sum[:])
		case unix.S_IFLNK:
			n.Type = "symlink"
			n.Link, _ = os.Readlink(p)
			n.Mode = 0
		case unix.S_IFCHR:
			n.Type = "char"
			n.Rdev = uint64(st.Rdev)
		case unix.S_IFBLK:
			n.Type = "block"
			n.Rdev = uint64(st.Rdev)
		case unix.S_IFIFO:
			n.Type = "fifo"
		}
		x, err := ReadXattrs(p)
		if err != nil {
			return err
		}
		var xs []string
		for k, v := range x {
			if strings.HasPrefix(k, "user.") && !strings.HasPrefix(k, "user.overlay.") {
				xs = append(xs, k+"="+string(v))
			}
		}
		sort.Strings(xs)
		n.Xattrs = strings.Join(xs, ",")
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return out
}

func diffSnapshots(want, got map[string]node) []string {
	var d []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("missing %s", k))
		case g != w:
			d = append(d, fmt.Sprintf("%s: want %+v, got %+v", k, w, g))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("unexpected %s", k))
		}
	}
	sort.Strings(d)
	return d
}

// tarEntry is a compact description of a tar header for assertions.
type tarEntry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Link     string
	Size     int64
	Major    int64
	Minor    int64
	Xattrs   string
}

func (e tarEntry) String() string {
	s := fmt.Sprintf("%s %c %#o %d:%d", e.Name, e.Type, e.Mode, e.UID, e.GID)
	if e.Link != "" {
		s += " -> " + e.Link
	}
	if e.Size != 0 {
		s += fmt.Sprintf(" size=%d", e.Size)
	}
	if e.Major != 0 || e.Minor != 0 {
		s += fmt.Sprintf(" dev=%d/%d", e.Major, e.Minor)
	}
	if e.Xattrs != "" {
		s += " xattrs=" + e.Xattrs
	}
	return s
}

// readTar lists the headers of an uncompressed tar.
func readTar(t testing.TB, b []byte) ([]tarEntry, []*tar.Header) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var es []tarEntry
	var hs []*tar.Header
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		var xs []string
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				xs = append(xs, strings.TrimPrefix(k, "SCHILY.xattr.")+"="+v)
			}
		}
		sort.Strings(xs)
		es = append(es, tarEntry{
			Name: h.Name, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid,
			Link: h.Linkname, Size: h.Size, Major: h.Devmajor, Minor: h.Devminor,
			Xattrs: strings.Join(xs, ","),
		})
		hs = append(hs, h)
	}
	return es, hs
}

// tb builds tar streams for tests.
type tb struct {
	buf bytes.Buffer
	tw  *tar.Writer
}

func newTB() *tb {
	b := &tb{}
	b.tw = tar.NewWriter(&b.buf)
	return b
}

var testTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

func (b *tb) file(name, content string, mode int64) *tb {
	b.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(content)), ModTime: testTime})
	b.tw.Write([]byte(content))
	return b
}

func (b *tb) dir(name string, mode int64) *tb {
	b.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: testTime})
	return b
}

func (b *tb) symlink(name, target string) *tb {
	b.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: testTime})
	return b
}

func (b *tb) link(name, target string) *tb {
	b.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: testTime})
	return b
}

func (b *tb) header(h *tar.Header) *tb {
	if err := b.tw.WriteHeader(h); err != nil {
		panic(err)
	}
	return b
}

func (b *tb) bytes() []byte {
	b.tw.Close()
	return b.buf.Bytes()
}

func mustWrite(t testing.TB, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
