package chroot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/strata-build/strata/internal/fscopy"
	"golang.org/x/sys/unix"
)

// merge applies to a linkDir's source what the command changed in the
// fill, the tree at tgt (moved out of the rootfs), under the source's
// lock (see lockDir), as a three-way merge with the record of the fill:
//
//   - a file the command left as the fill made it is left alone: a linked
//     file written in place is the source's own file, and a file of the
//     source that another run changed meanwhile keeps that change;
//   - a file the command made or replaced (another inode, or for a copy a
//     change) is moved into the source, over what is there;
//   - an entry of the fill the command removed is removed from the source
//     when the source still has the one the fill saw there;
//   - a directory's owner and mode are the command's when it changed them.
//
// First, no file is left shared between the source and the rootfs (see
// unshareLinks), which real mounts cannot do (link(2) across them fails
// with EXDEV).
func (m *mount) merge(ctx context.Context, tgt string, a *additions) error {
	unlock, err := lockDir(ctx, m.plan.source)
	if err != nil {
		return err
	}
	defer unlock()
	c := &linkCount{names: map[inode]int{}, nlink: map[inode]uint64{}}
	if err := c.walk(m.plan.source, true); err != nil {
		return err
	}
	if err := c.walk(tgt, false); err != nil {
		return err
	}
	if err := m.unshareLinks(c, tgt, a); err != nil {
		return err
	}
	mg := &merger{rec: m.fill}
	return mg.dir(tgt, m.plan.source, "")
}

// unshareLinks gives the rootfs and the source no file in common. A file
// of the source that has names outside the source and the tree (the
// command linked it into the rootfs, or another run has the source
// mounted) gets copies in place of its names in the rootfs, so that the
// source keeps its file for the other runs that write it in place. A file
// the command made in the tree with names outside it (linked from the
// rootfs) is replaced in the tree by a copy.
func (m *mount) unshareLinks(c *linkCount, tgt string, a *additions) error {
	shared := map[inode]bool{}
	for _, f := range m.fill {
		if !f.dir && f.src == f.tgt && c.nlink[f.src] > uint64(c.names[f.src]) {
			shared[f.src] = true
		}
	}
	if len(shared) > 0 {
		if err := a.unshareRootfs(shared); err != nil {
			return err
		}
	}
	u := &unsharer{want: func(st *unix.Stat_t) bool {
		_, inSource := c.nlink[inodeOf(st)]
		return !inSource && int(st.Nlink) > c.names[inodeOf(st)]
	}}
	return u.dir(tgt)
}

type merger struct {
	rec map[string]filled
}

// linkCount counts the names of files in the source and the tree, and
// holds the link counts of the source's files.
type linkCount struct {
	names map[inode]int
	nlink map[inode]uint64
}

// walk counts the names of each non-directory below dir.
func (c *linkCount) walk(dir string, source bool) error {
	ns, err := fscopy.ReadNames(dir)
	if err != nil {
		return err
	}
	for _, n := range ns {
		p := filepath.Join(dir, n)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := c.walk(p, source); err != nil {
				return err
			}
			continue
		}
		c.names[inodeOf(&st)]++
		if source {
			c.nlink[inodeOf(&st)] = st.Nlink
		}
	}
	return nil
}

// dir merges the tree's directory t (rel below the root) into the
// source's directory s.
func (mg *merger) dir(t, s, rel string) error {
	tnames, err := fscopy.ReadNames(t)
	if err != nil {
		return err
	}
	in := make(map[string]bool, len(tnames))
	for _, n := range tnames {
		in[n] = true
		if err := mg.entry(filepath.Join(t, n), filepath.Join(s, n), path.Join(rel, n)); err != nil {
			return err
		}
	}
	snames, err := fscopy.ReadNames(s)
	if err != nil {
		return err
	}
	for _, n := range snames {
		if !in[n] {
			if err := mg.forget(filepath.Join(s, n), path.Join(rel, n)); err != nil {
				return err
			}
		}
	}
	return mg.dirMeta(t, s, rel)
}

// entry merges the tree's entry t into the source's s.
func (mg *merger) entry(t, s, rel string) error {
	var tst, sst unix.Stat_t
	if err := unix.Lstat(t, &tst); err != nil {
		return &fs.PathError{Op: "lstat", Path: t, Err: err}
	}
	serr := unix.Lstat(s, &sst)
	if serr != nil && !errors.Is(serr, unix.ENOENT) {
		return &fs.PathError{Op: "lstat", Path: s, Err: serr}
	}
	sok := serr == nil
	tdir, sdir := tst.Mode&unix.S_IFMT == unix.S_IFDIR, sok && sst.Mode&unix.S_IFMT == unix.S_IFDIR
	if tdir && sdir {
		return mg.dir(t, s, rel)
	}
	if !tdir {
		rec, seen := mg.rec[rel]
		if seen && !rec.dir && inodeOf(&tst) == rec.tgt && (rec.tgt == rec.src || tst.Ctim == rec.ctime) {
			return nil // as the fill made it
		}
		if sok && inodeOf(&sst) == inodeOf(&tst) {
			return nil
		}
	}
	if sok && (tdir || sdir) {
		if err := os.RemoveAll(s); err != nil {
			return err
		}
	}
	return put(t, s, &tst)
}

// put moves the tree's entry t (stat st) to s, over what is there; a copy
// when they are on different filesystems.
func put(t, s string, st *unix.Stat_t) error {
	err := unix.Rename(t, s)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EXDEV) {
		return &os.LinkError{Op: "rename", Old: t, New: s, Err: err}
	}
	tmp := filepath.Join(filepath.Dir(s), ".strata-new-"+filepath.Base(s))
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err = os.Mkdir(tmp, 0o700); err == nil {
			err = (&filler{ctx: context.Background()}).tree(t, tmp, "")
		}
	} else {
		err = copyEntry(t, tmp, st)
	}
	if err == nil {
		err = os.Rename(tmp, s)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("copy %s to %s: %w", t, s, err)
	}
	return nil
}

// forget removes the source's entry s, which the tree has not, when the
// fill had it (rel) and it is still the one the fill saw: what the command
// removed. A directory goes when nothing else is left in it.
func (mg *merger) forget(s, rel string) error {
	rec, seen := mg.rec[rel]
	if !seen {
		return nil // made since the fill, by another run
	}
	var st unix.Stat_t
	if err := unix.Lstat(s, &st); err != nil {
		return nil
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	switch {
	case rec.dir && isDir:
		names, err := fscopy.ReadNames(s)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := mg.forget(filepath.Join(s, n), path.Join(rel, n)); err != nil {
				return err
			}
		}
		err = unix.Rmdir(s)
		if err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			return &fs.PathError{Op: "rmdir", Path: s, Err: err}
		}
	case !rec.dir && !isDir && inodeOf(&st) == rec.src:
		if err := unix.Unlink(s); err != nil && !errors.Is(err, unix.ENOENT) {
			return &fs.PathError{Op: "unlink", Path: s, Err: err}
		}
	}
	return nil
}

// dirMeta gives the source's directory s the owner and mode of the tree's
// t when the command changed them (or made t).
func (mg *merger) dirMeta(t, s, rel string) error {
	var st unix.Stat_t
	if err := unix.Lstat(t, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: t, Err: err}
	}
	rec, seen := mg.rec[rel]
	if seen && rec.dir && rec.uid == st.Uid && rec.gid == st.Gid && rec.mode == st.Mode&0o7777 {
		return nil
	}
	if err := unix.Lchown(s, int(st.Uid), int(st.Gid)); err != nil {
		return &fs.PathError{Op: "lchown", Path: s, Err: err}
	}
	if err := unix.Chmod(s, st.Mode&0o7777); err != nil {
		return &fs.PathError{Op: "chmod", Path: s, Err: err}
	}
	return nil
}

// lockDir takes an exclusive flock on the directory p, waiting for it
// (until ctx ends), and returns its release: the fills and merges of runs
// that mount one source at the same time take turns.
func lockDir(ctx context.Context, p string) (func(), error) {
	for {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		for {
			err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
			if err == nil || !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
				break
			}
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(10 * time.Millisecond):
				continue
			}
			break
		}
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		// The directory may have been replaced while this run waited.
		var held, now unix.Stat_t
		if unix.Fstat(fd, &held) == nil && unix.Stat(p, &now) == nil && held.Dev == now.Dev && held.Ino == now.Ino {
			return func() { unix.Close(fd) }, nil // closing the only descriptor releases the lock
		}
		unix.Close(fd)
	}
}
