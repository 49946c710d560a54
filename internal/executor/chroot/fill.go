package chroot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/layer"
)

// inode names a file: device and inode number.
type inode struct{ dev, ino uint64 }

func inodeOf(st *unix.Stat_t) inode { return inode{uint64(st.Dev), st.Ino} }

// filled is what the fill of a linkDir made at a path below its root, to
// tell afterwards what the command changed.
type filled struct {
	dir bool
	// src is the source's file, tgt the fill's (the same when linked);
	// ctime is the fill's ctime, which tells a copy changed in place.
	src, tgt inode
	ctime    unix.Timespec
	// a directory's owner and mode
	uid, gid, mode uint32
}

// filler fills a mount's directory from its source directory: hard links
// (link) or copies of the files, directories made with the source's
// owner, mode, xattrs and times.
type filler struct {
	ctx    context.Context
	link   bool
	noLink bool              // a link failed with EXDEV: copies from now on
	copies map[inode]string  // the first copy of a source file with more names
	rec    map[string]filled // what was made, by path below the root; nil: not recorded
}

// tree fills dst, an existing directory (rel below the mount's root),
// with the contents of src, then gives it src's metadata.
func (f *filler) tree(src, dst, rel string) error {
	if err := f.ctx.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: src, Err: err}
	}
	names, err := readNames(src)
	if err != nil {
		return err
	}
	for _, n := range names {
		s, d, r := filepath.Join(src, n), filepath.Join(dst, n), path.Join(rel, n)
		var cst unix.Stat_t
		if err := unix.Lstat(s, &cst); err != nil {
			return &fs.PathError{Op: "lstat", Path: s, Err: err}
		}
		if cst.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
			if err := f.tree(s, d, r); err != nil {
				return err
			}
			continue
		}
		if err := f.entry(s, d, r, &cst); err != nil {
			return err
		}
	}
	if err := setMeta(dst, src, &st); err != nil {
		return err
	}
	if f.rec != nil {
		f.rec[rel] = filled{dir: true, uid: st.Uid, gid: st.Gid, mode: st.Mode & 0o7777}
	}
	return nil
}

// entry makes the non-directory dst like src (stat st): a link, or a copy.
func (f *filler) entry(src, dst, rel string, st *unix.Stat_t) error {
	linked := false
	if f.link && !f.noLink {
		err := unix.Link(src, dst)
		switch {
		case err == nil:
			linked = true
		case errors.Is(err, unix.EXDEV):
			f.noLink = true
		case !errors.Is(err, unix.EMLINK) && !errors.Is(err, unix.EPERM):
			return &os.LinkError{Op: "link", Old: src, New: dst, Err: err}
		}
	}
	if !linked {
		if err := f.copy(src, dst, st); err != nil {
			return err
		}
	}
	if f.rec == nil {
		return nil
	}
	var dst0 unix.Stat_t
	if err := unix.Lstat(dst, &dst0); err != nil {
		return &fs.PathError{Op: "lstat", Path: dst, Err: err}
	}
	f.rec[rel] = filled{src: inodeOf(st), tgt: inodeOf(&dst0), ctime: dst0.Ctim}
	return nil
}

// copy copies src to dst, keeping names of one source file linked.
func (f *filler) copy(src, dst string, st *unix.Stat_t) error {
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if first, ok := f.copies[inodeOf(st)]; ok {
			if err := unix.Link(first, dst); err == nil {
				return nil
			}
		}
		if f.copies == nil {
			f.copies = map[inode]string{}
		}
		f.copies[inodeOf(st)] = dst
	}
	return copyEntry(src, dst, st)
}

// copyEntry copies the non-directory src (stat st) to the new dst with
// its owner, mode, xattrs and times.
func copyEntry(src, dst string, st *unix.Stat_t) error {
	var err error
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		err = fscopy.CopyFile(src, dst)
	case unix.S_IFLNK:
		var target string
		if target, err = os.Readlink(src); err == nil {
			err = os.Symlink(target, dst)
		}
	default: // a device, fifo or socket (a socket copied is not listened on)
		if err = unix.Mknod(dst, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
			err = &fs.PathError{Op: "mknod", Path: dst, Err: err}
		}
	}
	if err != nil {
		return err
	}
	return setMeta(dst, src, st)
}

// copySecret copies the regular file src to dst, the file's own (mode
// 0600 until it has src's), and returns dst open for writing, to empty it
// after the run.
func copySecret(src, dst string) (*os.File, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: src, Err: err}
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(out, in); err != nil {
		return out, err
	}
	return out, setMeta(dst, src, &st)
}

// copyBack writes the content of gone, what became of a linkFile's copy,
// into its source, when it is still a regular file and was written.
func copyBack(gone, source string) error {
	st, err := os.Lstat(gone)
	if err != nil || !st.Mode().IsRegular() {
		return nil
	}
	in, err := os.Open(gone)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(source, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// setMeta gives p (just made from src) src's owner, mode, xattrs and
// times. A chown clears setuid bits and security.capability, so it comes
// first.
func setMeta(p, src string, st *unix.Stat_t) error {
	if err := unix.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return &fs.PathError{Op: "lchown", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
			return &fs.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	if err := copyXattrs(src, p); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimensat", Path: p, Err: err}
	}
	return nil
}

// copyXattrs copies the xattrs of src to dst, but for overlayfs' own; one
// that may not be set here (a trusted.* one without CAP_SYS_ADMIN, an
// SELinux label) or that the filesystem does not take is left out.
func copyXattrs(src, dst string) error {
	xattrs, err := layer.ReadXattrs(src)
	if err != nil {
		return err
	}
	for k, v := range xattrs {
		if strings.HasPrefix(k, "trusted.overlay.") || strings.HasPrefix(k, "user.overlay.") {
			continue
		}
		err := unix.Lsetxattr(dst, k, v, 0)
		if err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOTSUP) && k != "security.selinux" {
			return &fs.PathError{Op: "setxattr " + k, Path: dst, Err: err}
		}
	}
	return nil
}

// readNames lists the directory p.
func readNames(p string) ([]string, error) {
	d, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return names, nil
}
