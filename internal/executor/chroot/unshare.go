package chroot

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/strata-build/strata/internal/fscopy"
	"golang.org/x/sys/unix"
)

// unsharer replaces the regular files and symlinks below a directory that
// it wants by copies of their own (the names of one file below it stay one
// file), keeping the times of the directories they are in.
type unsharer struct {
	want   func(st *unix.Stat_t) bool
	copies map[inode]string // the copy that replaced a file
	skip   string           // a directory not to look into
	dev    uint64           // when set, the filesystem not to leave
}

func (u *unsharer) dir(dir string) error {
	ns, err := fscopy.ReadNames(dir)
	if err != nil {
		return err
	}
	var dirTimes *[2]unix.Timespec
	for _, n := range ns {
		p := filepath.Join(dir, n)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		if u.dev != 0 && uint64(st.Dev) != u.dev {
			continue
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if p == u.skip {
				continue
			}
			if err := u.dir(p); err != nil {
				return err
			}
			continue
		case unix.S_IFREG, unix.S_IFLNK:
		default:
			continue // a socket, fifo or device: nothing to write in
		}
		key := inodeOf(&st)
		first, done := u.copies[key]
		if !done && !u.want(&st) {
			continue
		}
		if dirTimes == nil {
			t, ok := times(dir)
			if !ok {
				return fmt.Errorf("lstat %s", dir)
			}
			dirTimes = &t
		}
		if err := u.replace(p, first, &st); err != nil {
			return err
		}
		if !done {
			if u.copies == nil {
				u.copies = map[inode]string{}
			}
			u.copies[key] = p
		}
	}
	if dirTimes != nil {
		ts := []unix.Timespec{dirTimes[0], dirTimes[1]}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, dir, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "utimensat", Path: dir, Err: err}
		}
	}
	return nil
}

// replace puts at p (stat st) a copy of it, or a link to first, the copy
// made for another name of the file.
func (u *unsharer) replace(p, first string, st *unix.Stat_t) error {
	tmp := filepath.Join(filepath.Dir(p), ".strata-unshare-"+filepath.Base(p))
	var err error
	if first != "" {
		err = os.Link(first, tmp)
	} else {
		err = copyEntry(p, tmp, st)
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("give %s a file of its own: %w", p, err)
	}
	return nil
}

// unshareRootfs replaces the rootfs's names of the files in keys by copies
// (a file the command linked from a mount into the rootfs).
func (a *additions) unshareRootfs(keys map[inode]bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(a.rootfs, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: a.rootfs, Err: err}
	}
	u := &unsharer{want: func(st *unix.Stat_t) bool { return keys[inodeOf(st)] }, dev: uint64(st.Dev)}
	if a.stash != nil && a.stash.inRootfs {
		u.skip = a.stash.dir
	}
	return u.dir(a.rootfs)
}
