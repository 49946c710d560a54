package chroot

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/fscopy"
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
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: src, Err: err}
	}
	return f.dir(src, dst, rel, &st)
}

// dir is tree with src's lstat st known.
func (f *filler) dir(src, dst, rel string, st *unix.Stat_t) error {
	if err := f.ctx.Err(); err != nil {
		return err
	}
	names, err := fscopy.ReadNames(src)
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
			if err := f.dir(s, d, r, &cst); err != nil {
				return err
			}
			continue
		}
		if err := f.entry(s, d, r, &cst); err != nil {
			return err
		}
	}
	if err := fscopy.CopyMeta(dst, src, st); err != nil {
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
	if linked { // dst is src's inode (merge looks at no ctime then)
		f.rec[rel] = filled{src: inodeOf(st), tgt: inodeOf(st)}
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
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		err = fscopy.CopyFile(src, dst)
	} else { // a socket copied is not listened on
		err = fscopy.MakeSpecial(src, dst, st)
	}
	if err != nil {
		return err
	}
	return fscopy.CopyMeta(dst, src, st)
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
	return out, fscopy.CopyMeta(dst, src, &st)
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
