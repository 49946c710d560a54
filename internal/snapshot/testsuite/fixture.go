package testsuite

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/layer"
)

// Times of the fixtures: every layer entry has t0 unless it says otherwise,
// and diffs are written with their times clamped to epoch, so what a change
// touched reads as epoch ("now" in a listing) and what it left keeps t0.
var (
	t0    = time.Unix(1_000_000_000, 0) // 2001-09-09
	epoch = time.Unix(1_577_836_800, 0) // 2020-01-01
)

// entry is one tar entry of a fixture layer.
type entry struct {
	hdr  tar.Header
	body string
}

type opt func(*tar.Header)

func mode(m int64) opt       { return func(h *tar.Header) { h.Mode = m } }
func owner(uid, gid int) opt { return func(h *tar.Header) { h.Uid, h.Gid = uid, gid } }
func xattr(k, v string) opt {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = v
	}
}

func mk(name string, typ byte, m int64, body string, opts []opt) entry {
	e := entry{hdr: tar.Header{Name: name, Typeflag: typ, Mode: m, ModTime: t0, Format: tar.FormatPAX}, body: body}
	for _, o := range opts {
		o(&e.hdr)
	}
	return e
}

func file(name, body string, opts ...opt) entry { return mk(name, tar.TypeReg, 0o644, body, opts) }
func dir(name string, opts ...opt) entry        { return mk(name+"/", tar.TypeDir, 0o755, "", opts) }
func symlink(name, target string, opts ...opt) entry {
	e := mk(name, tar.TypeSymlink, 0o777, "", opts)
	e.hdr.Linkname = target
	return e
}
func hardlink(name, target string) entry {
	e := mk(name, tar.TypeLink, 0o644, "", nil)
	e.hdr.Linkname = target
	return e
}
func chardev(name string, major, minor int64, opts ...opt) entry {
	e := mk(name, tar.TypeChar, 0o666, "", opts)
	e.hdr.Devmajor, e.hdr.Devminor = major, minor
	return e
}
func fifo(name string, opts ...opt) entry { return mk(name, tar.TypeFifo, 0o644, "", opts) }

// whiteout deletes name from the layers below.
func whiteout(name string) entry {
	return mk(path.Join(path.Dir(name), ".wh."+path.Base(name)), tar.TypeReg, 0, "", nil)
}

// opaque hides what the layers below have in the directory name.
func opaque(name string) entry { return mk(path.Join(name, ".wh..wh..opq"), tar.TypeReg, 0, "", nil) }

// layerTar writes entries as a layer tar; parent directories that the
// entries do not list come first as 0755 root directories with time t0, as
// real layers list them.
func layerTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	listed := map[string]bool{}
	for _, e := range entries {
		listed[strings.TrimSuffix(e.hdr.Name, "/")] = true
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.hdr.Name, "/")
		var parents []string
		for p := path.Dir(name); p != "." && !listed[p]; p = path.Dir(p) {
			parents = append(parents, p)
			listed[p] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			h := dir(parents[i]).hdr
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
		}
		h := e.hdr
		h.Size = int64(len(e.body))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// makeLayers unpacks each fixture layer as the store does (layer.Apply)
// into a directory below base, and returns the directories, bottom first.
func makeLayers(t testing.TB, base string, layers [][]entry) []string {
	t.Helper()
	var dirs []string
	for i, l := range layers {
		d := filepath.Join(base, fmt.Sprintf("layer-%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := layer.Apply(context.Background(), d, bytes.NewReader(layerTar(t, l)), layer.ApplyOptions{}); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		dirs = append(dirs, d)
	}
	return dirs
}

// flatten applies the fixture layers, bottom first, onto one directory with
// whiteouts deleting (layer.ApplyFlat): the union every snapshot and view
// of those layers must show.
func flatten(t testing.TB, dir string, layers [][]entry) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	all := func(string) bool { return true }
	for i, l := range layers {
		if err := layer.ApplyFlat(context.Background(), dir, bytes.NewReader(layerTar(t, l)), all); err != nil {
			t.Fatalf("flatten layer %d: %v", i, err)
		}
	}
}

// listTree describes every entry below root, one line each, sorted: type,
// mode, owner, mtime, xattrs (not overlayfs' own nor SELinux labels),
// content, link target or device, and for a file with another name seen
// earlier, that name.
func listTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	first := map[[2]uint64]string{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %s %o %d:%d %d.%09d", rel, kind(st.Mode), st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec, st.Mtim.Nsec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			id := [2]uint64{st.Dev, st.Ino}
			if f, ok := first[id]; ok {
				line += " =" + f
			}
			first[id] = rel
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + content(b)
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" %d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		for _, kv := range xattrsOf(t, p) {
			line += " " + kv
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", root, err)
	}
	sort.Strings(out)
	return out
}

func kind(m uint32) string {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFREG:
		return "file"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "?"
}

// content shows a file's bytes: quoted when short, else their digest.
func content(b []byte) string {
	if len(b) <= 48 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(b))[:19]
}

// xattrsOf lists p's xattrs as k=v, sorted, without overlayfs' own and
// SELinux labels.
func xattrsOf(t testing.TB, p string) []string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var out []string
	for _, k := range strings.Split(string(buf[:n]), "\x00") {
		if k == "" || strings.HasPrefix(k, "trusted.overlay.") || strings.HasPrefix(k, "user.overlay.") || k == "security.selinux" {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, k, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, k, err)
		}
		out = append(out, fmt.Sprintf("%s=%q", k, v[:m]))
	}
	sort.Strings(out)
	return out
}

// listDiff describes the layer tar of a diff directory (times clamped to
// epoch), one line per entry in tar order: name, type, mode, owner, the
// time ("now" for epoch, nothing for t0), content, link target or device,
// and xattrs. Whiteouts and opaque markers are their bare names.
func listDiff(t testing.TB, diff string) ([]string, string) {
	t.Helper()
	var buf bytes.Buffer
	e := epoch
	if err := layer.WriteDiff(context.Background(), diff, &buf, layer.DiffOptions{Epoch: &e}); err != nil {
		t.Fatalf("write diff: %v", err)
	}
	id := fmt.Sprintf("sha256:%x", sha256.Sum256(buf.Bytes()))
	var out []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(path.Base(h.Name), ".wh.") {
			out = append(out, h.Name)
			continue
		}
		line := fmt.Sprintf("%s %s %o %d:%d", h.Name, tarKind(h.Typeflag), h.Mode, h.Uid, h.Gid)
		switch {
		case h.ModTime.Equal(epoch):
			line += " now"
		case !h.ModTime.Equal(t0):
			line += fmt.Sprintf(" t=%d", h.ModTime.Unix())
		}
		switch h.Typeflag {
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			line += " " + content(b)
		case tar.TypeLink, tar.TypeSymlink:
			line += " -> " + h.Linkname
		case tar.TypeChar, tar.TypeBlock:
			line += fmt.Sprintf(" %d,%d", h.Devmajor, h.Devminor)
		}
		var xs []string
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				xs = append(xs, fmt.Sprintf("%s=%q", x, v))
			}
		}
		sort.Strings(xs)
		for _, x := range xs {
			line += " " + x
		}
		out = append(out, line)
	}
	return out, id
}

func tarKind(f byte) string {
	switch f {
	case tar.TypeDir:
		return "dir"
	case tar.TypeReg:
		return "file"
	case tar.TypeLink:
		return "link"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeChar:
		return "char"
	case tar.TypeBlock:
		return "block"
	case tar.TypeFifo:
		return "fifo"
	}
	return string(f)
}
