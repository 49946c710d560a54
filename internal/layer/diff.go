package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/strata-build/strata/internal/ctxio"
	"golang.org/x/sys/unix"
)

// OCI whiteout names.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// overlayfs xattrs (trusted.* for root mounts, user.* with the userxattr option).
const (
	xattrOpaque   = "overlay.opaque"
	xattrWhiteout = "overlay.whiteout"
	xattrRedirect = "overlay.redirect"
	xattrMetacopy = "overlay.metacopy"
)

// ErrWhiteoutName is returned for a file (not an overlay whiteout) whose name
// starts with ".wh.": a layer cannot carry it, since every unpacker reads such
// an entry as a whiteout (".wh.etc" would delete /etc). BuildKit v0.34.2
// writes such files into its layers as they are; strata refuses them.
var ErrWhiteoutName = errors.New(`file names starting with ".wh." are reserved for layer whiteouts`)

// CheckName returns an error wrapping ErrWhiteoutName when the last element
// of name (a path in an image's filesystem) starts with ".wh.".
func CheckName(name string) error {
	if strings.HasPrefix(filepath.Base(name), whiteoutPrefix) {
		return fmt.Errorf("%q: %w", name, ErrWhiteoutName)
	}
	return nil
}

var overlayXattrPrefixes = []string{"trusted.overlay.", "user.overlay."}

// skipXattr reports whether an xattr is never carried in a layer: overlayfs'
// own bookkeeping and SELinux labels (the runtime assigns those).
func skipXattr(key string) bool {
	for _, p := range overlayXattrPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return key == "security.selinux"
}

// DiffOptions tune WriteDiff.
type DiffOptions struct {
	// Epoch, when non-nil, clamps every entry's mtime to at most *Epoch
	// (BuildKit rewrite-timestamp).
	Epoch *time.Time
	// Level is the compression level for Commit (gzip 1-9, zstd 1-22);
	// 0 means the compressor's default.
	Level int
	// MaxBytes bounds what the layer's regular files add up to (0: no
	// bound), checked before a file's content is read: a sparse file's holes
	// must be written out as zeros (OCI layers are plain tar), so a huge
	// sparse file fails at once instead of being compressed for minutes.
	MaxBytes int64
	// BoundHint says how to raise MaxBytes, for its error.
	BoundHint string
	// Known, when set, returns the sha256 (hex) of the content of the
	// regular file at the tar name name, when the caller knows it (it
	// wrote the file). Commit then identifies the members that hold the
	// file by that checksum instead of hashing its bytes again, and reads
	// the file only when it needs its bytes. The checksum is trusted: a
	// member that is an earlier blob's member of the same place (its
	// reuse chain) is copied with the hash state recorded after it,
	// without reading its files; a member reused from elsewhere is read
	// and checked against its bytes (CRC-32 for gzip, XXH64 for zstd).
	Known func(name string) (sum string, ok bool)
}

// WriteDiff writes the OCI layer tar of an overlayfs upperdir dir to w.
//
// Overlay whiteouts (character devices 0/0, or files marked with the
// overlay.whiteout xattr) become empty regular entries ".wh.NAME"; a directory
// whose overlay.opaque xattr is "y" is followed by "DIR/.wh..wh..opq".
// Entries are written in a depth-first walk, parents before children and each
// directory's entries sorted by their tar name; names are relative ("etc/",
// "etc/passwd"), directories end in "/". Regular files linked more than once
// inside dir are written once, later names as hardlinks to the first. Owners
// are numeric only, modes keep setuid/setgid/sticky, mtimes are truncated to
// seconds (and clamped to opts.Epoch), atime/ctime are not written, and
// xattrs (except overlay.* and security.selinux) are PAX SCHILY.xattr
// records. The output is deterministic for the same input. Sockets are
// skipped. Upperdirs written with overlay redirect_dir or metacopy (which
// need the lower layers to interpret) are rejected: mount with
// redirect_dir=off,metacopy=off. A file that is not a whiteout but whose
// name starts with ".wh." is an error wrapping ErrWhiteoutName.
func WriteDiff(ctx context.Context, dir string, w io.Writer, opts DiffOptions) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("write diff: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("write diff: %s is not a directory", dir)
	}
	d := &diffWriter{
		ctx:   ctx,
		tw:    tar.NewWriter(w),
		links: make(map[fileID]string),
		buf:   make([]byte, 256<<10),
		bytes: Counter{Max: opts.MaxBytes, Hint: opts.BoundHint},
	}
	if ew, ok := w.(entryWriter); ok {
		d.entries = ew
		d.known = opts.Known
	}
	if opts.Epoch != nil {
		e := time.Unix(opts.Epoch.Unix(), 0)
		d.epoch = &e
	}
	if err := d.walk(dir, ""); err != nil {
		return fmt.Errorf("write diff of %s: %w", dir, err)
	}
	if d.entries != nil {
		if err := d.tw.Flush(); err != nil {
			return fmt.Errorf("write diff of %s: %w", dir, err)
		}
		d.entries.End()
	}
	if err := d.tw.Close(); err != nil {
		return fmt.Errorf("write diff of %s: %w", dir, err)
	}
	return nil
}

type fileID struct{ dev, ino uint64 }

type diffWriter struct {
	ctx   context.Context
	tw    *tar.Writer
	epoch *time.Time
	links map[fileID]string
	buf   []byte
	zeros []byte  // see writeStandIn
	bytes Counter // file sizes so far, against opts.MaxBytes
	// entries, when set, is told where each entry starts and what is
	// known of a file's content (see memberWriter)
	entries entryWriter
	known   func(name string) (sum string, ok bool) // see DiffOptions.Known
}

type diffEntry struct {
	name     string // tar base name (".wh.X" for whiteouts)
	src      string // name in the directory
	st       unix.Stat_t
	xattrs   map[string][]byte
	whiteout bool
}

// walk writes the entries of the directory abs (tar path rel, "" for the root).
func (d *diffWriter) walk(abs, rel string) error {
	f, err := os.Open(abs)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("read directory %s: %w", abs, err)
	}
	entries := make([]diffEntry, 0, len(names))
	for _, n := range names {
		e := diffEntry{name: n, src: n}
		p := filepath.Join(abs, n)
		if err := unix.Lstat(p, &e.st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		mode := e.st.Mode & unix.S_IFMT
		if mode == unix.S_IFSOCK {
			continue
		}
		if mode != unix.S_IFCHR || e.st.Rdev != 0 {
			if e.xattrs, err = ReadXattrs(p); err != nil {
				return err
			}
		}
		switch {
		case mode == unix.S_IFCHR && e.st.Rdev == 0:
			e.whiteout = true
		case mode == unix.S_IFREG && overlayXattr(e.xattrs, xattrWhiteout) != nil:
			e.whiteout = true // an overlay "xwhiteout"
		}
		if e.whiteout {
			e.name = whiteoutPrefix + n
		} else if err := CheckName("/" + rel + n); err != nil {
			return err
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b diffEntry) int { return strings.Compare(a.name, b.name) })
	for i := range entries {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		if err := d.entry(filepath.Join(abs, entries[i].src), rel, &entries[i]); err != nil {
			return err
		}
	}
	return nil
}

func (d *diffWriter) mtime(st *unix.Stat_t) time.Time {
	t := time.Unix(st.Mtim.Sec, 0)
	if d.epoch != nil && t.After(*d.epoch) {
		return *d.epoch
	}
	return t
}

func (d *diffWriter) entry(abs, parent string, e *diffEntry) error {
	name := parent + e.name
	st := &e.st
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: d.mtime(st),
	}
	if e.whiteout {
		hdr.Typeflag = tar.TypeReg
		hdr.Mode, hdr.Uid, hdr.Gid = 0, 0, 0
		return d.writeHeader(hdr)
	}
	for _, k := range []string{xattrRedirect, xattrMetacopy} {
		if overlayXattr(e.xattrs, k) != nil {
			return fmt.Errorf("%s: overlay %s xattr found: the upperdir needs its lower layers to be read (mount overlay with redirect_dir=off,metacopy=off)", abs, k)
		}
	}
	for k, v := range e.xattrs {
		if skipXattr(k) {
			continue
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = make(map[string]string)
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = string(v)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name = name + "/"
		if err := d.writeHeader(hdr); err != nil {
			return err
		}
		if string(overlayXattr(e.xattrs, xattrOpaque)) == "y" {
			opq := &tar.Header{Typeflag: tar.TypeReg, Name: name + "/" + whiteoutOpaque, ModTime: hdr.ModTime}
			if err := d.writeHeader(opq); err != nil {
				return err
			}
		}
		return d.walk(abs, name+"/")
	case unix.S_IFREG:
		if st.Nlink > 1 {
			id := fileID{dev: st.Dev, ino: st.Ino}
			if first, ok := d.links[id]; ok {
				hdr.Typeflag = tar.TypeLink
				hdr.Linkname = first
				hdr.PAXRecords = nil
				return d.writeHeader(hdr)
			}
			d.links[id] = name
		}
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		return d.writeFile(abs, hdr)
	case unix.S_IFLNK:
		target, err := os.Readlink(abs)
		if err != nil {
			return err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	case unix.S_IFCHR:
		hdr.Typeflag = tar.TypeChar
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		hdr.Typeflag = tar.TypeBlock
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return fmt.Errorf("%s: unsupported file type %#o", abs, st.Mode&unix.S_IFMT)
	}
	return d.writeHeader(hdr)
}

func (d *diffWriter) writeHeader(hdr *tar.Header) error {
	if d.entries != nil {
		// the previous entry's padding belongs before the boundary
		if err := d.tw.Flush(); err != nil {
			return fmt.Errorf("write tar header %s: %w", hdr.Name, err)
		}
		d.entries.Boundary(hdr)
	}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write tar header %s: %w", hdr.Name, err)
	}
	return nil
}

func (d *diffWriter) writeFile(abs string, hdr *tar.Header) error {
	if err := d.bytes.Add(hdr.Size); err != nil {
		return fmt.Errorf("%s: the files add up to %w", hdr.Name, err)
	}
	if err := d.writeHeader(hdr); err != nil {
		return err
	}
	if d.known != nil && hdr.Size > 0 {
		// tar.Writer has written the header through: what follows is
		// this content, which the entry writer may read itself
		if sum, ok := d.known(hdr.Name); ok && d.entries.Content(hdr.Size, sum, abs) {
			return d.writeStandIn(hdr.Size)
		}
	}
	return d.copyContent(abs, hdr)
}

// copyContent writes the content of the file at abs, hdr.Size bytes.
func (d *diffWriter) copyContent(abs string, hdr *tar.Header) error {
	f, err := OpenFile(abs, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(d.tw, io.LimitReader(ctxio.Reader(d.ctx, f), hdr.Size), d.buf)
	if err != nil {
		return fmt.Errorf("copy %s: %w", abs, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("copy %s: file shrank while being read (%d of %d bytes)", abs, n, hdr.Size)
	}
	return nil
}

// writeStandIn writes size zero bytes in place of a file's content that the
// entry writer reads itself (see entryWriter.Content).
func (d *diffWriter) writeStandIn(size int64) error {
	if d.zeros == nil {
		d.zeros = make([]byte, 1<<20)
	}
	for size > 0 {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		n, err := d.tw.Write(d.zeros[:min(size, int64(len(d.zeros)))])
		if err != nil {
			return err
		}
		size -= int64(n)
	}
	return nil
}

// overlayXattr returns the value of overlay xattr name (trusted.overlay.NAME or
// user.overlay.NAME), or nil.
func overlayXattr(x map[string][]byte, name string) []byte {
	for _, p := range []string{"trusted.", "user."} {
		if v, ok := x[p+name]; ok {
			if v == nil {
				v = []byte{}
			}
			return v
		}
	}
	return nil
}

// ReadXattrs returns every extended attribute of path (not following a
// symlink); nil where the filesystem has none or does not support them.
func ReadXattrs(path string) (map[string][]byte, error) {
	buf := make([]byte, 1024)
	var n int
	for {
		var err error
		n, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Llistxattr(path, nil)
			if err != nil {
				return nil, &os.PathError{Op: "llistxattr", Path: path, Err: err}
			}
			buf = make([]byte, sz+64)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "llistxattr", Path: path, Err: err}
		}
		break
	}
	if n == 0 {
		return nil, nil
	}
	x := make(map[string][]byte)
	for _, k := range bytes.Split(buf[:n], []byte{0}) {
		if len(k) == 0 {
			continue
		}
		key := string(k)
		v, err := getXattr(path, key)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, &os.PathError{Op: "lgetxattr " + key, Path: path, Err: err}
		}
		x[key] = v
	}
	return x, nil
}

func getXattr(path, key string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, key, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Lgetxattr(path, key, nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz+64)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
