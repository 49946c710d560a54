package native

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/layer"
	"golang.org/x/sys/unix"
)

// materializer writes the union of layers into a plain directory tree.
type materializer struct {
	// link makes regular files hard links to the layers' files (a
	// read-only view), falling back to copies where linking fails;
	// otherwise every file is a copy of its own (a writable snapshot: a
	// RUN may change a file in place, which must not reach a layer).
	link   bool
	noLink bool // linking failed with EXDEV: copy from now on
	// links holds the first copy of each layer inode, so that names linked
	// inside one layer stay linked (never across layers: the copy engine
	// links files of several layers, which are separate files to overlayfs
	// as soon as one is written).
	links map[linkKey]string
	// dirs records each directory made, by path below the root, with its
	// inode number (see Snapshot.recreated); nil: not recorded.
	dirs map[string]uint64
}

type linkKey struct {
	layer    int
	dev, ino uint64
}

// mergeDir fills dst (an existing directory, rel below the root) with the
// union of vis (top-most first).
func (m *materializer) mergeDir(ctx context.Context, dst, rel string, vis []layerDir) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ents, err := listUnion(vis)
	if err != nil {
		return err
	}
	for i := range ents {
		e := &ents[i]
		p := filepath.Join(dst, e.name)
		r := filepath.Join(rel, e.name)
		if !e.isDir() {
			if err := m.entry(e, p); err != nil {
				return err
			}
			continue
		}
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		if m.dirs != nil {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return &fs.PathError{Op: "lstat", Path: p, Err: err}
			}
			m.dirs[r] = st.Ino
		}
		if err := m.mergeDir(ctx, p, r, e.at); err != nil {
			return err
		}
		// the directory's own metadata once its children are written
		if err := setMeta(p, e.top(), &e.st); err != nil {
			return err
		}
	}
	return nil
}

// entry makes the non-directory e at p.
func (m *materializer) entry(e *unionEntry, p string) error {
	st := &e.st
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		key := linkKey{layer: e.at[0].layer, dev: st.Dev, ino: st.Ino}
		if st.Nlink > 1 && !m.link {
			if first, ok := m.links[key]; ok {
				if err := unix.Link(first, p); err == nil {
					return nil
				}
			}
		}
		if m.link && !m.noLink {
			err := unix.Link(e.top(), p)
			if err == nil {
				return nil
			}
			if errors.Is(err, unix.EXDEV) {
				m.noLink = true
			}
		}
		if err := fscopy.CopyFile(e.top(), p); err != nil {
			return err
		}
		if st.Nlink > 1 && !m.link {
			if m.links == nil {
				m.links = map[linkKey]string{}
			}
			m.links[key] = p
		}
		return setMeta(p, e.top(), st)
	}
	if err := makeSpecial(e.top(), p, st); err != nil {
		return err
	}
	return setMeta(p, e.top(), st)
}

// makeSpecial makes a symlink, device, fifo or socket at dst like src.
func makeSpecial(src, dst string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknod(dst, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
			return &fs.PathError{Op: "mknod", Path: dst, Err: err}
		}
		return nil
	}
	return fmt.Errorf("%s: unsupported file type %#o", src, st.Mode&unix.S_IFMT)
}

// setMeta gives p (just made from src) src's owner, mode, xattrs and times.
// The order matters: a chown clears setuid bits and security.capability, so
// it comes first.
func setMeta(p, src string, st *unix.Stat_t) error {
	if err := unix.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return &fs.PathError{Op: "lchown", Path: p, Err: err}
	}
	symlink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if !symlink {
		if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
			return &fs.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	if err := copyXattrs(src, p); err != nil {
		return err
	}
	return setTimes(p, st)
}

// setTimes sets p's access and modification times (not following a symlink).
func setTimes(p string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimensat", Path: p, Err: err}
	}
	return nil
}

// copyXattrs copies the xattrs of src to dst, except overlayfs' own. An
// SELinux label that cannot be set is left out (the runtime labels files).
func copyXattrs(src, dst string) error {
	xattrs, err := layer.ReadXattrs(src)
	if err != nil {
		return err
	}
	for k, v := range xattrs {
		if skipXattr(k) {
			continue
		}
		if err := unix.Lsetxattr(dst, k, v, 0); err != nil {
			if k == "security.selinux" {
				continue
			}
			return &fs.PathError{Op: "setxattr " + k, Path: dst, Err: err}
		}
	}
	return nil
}
