package fscopy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/layer"
)

// CopyMeta gives p (just made from src, whose lstat is st) src's owner,
// mode, xattrs (see CopyXattrs) and times. The order matters: a chown
// clears setuid bits and security.capability, so it comes first.
func CopyMeta(p, src string, st *unix.Stat_t) error {
	if err := unix.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return &fs.PathError{Op: "lchown", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
			return &fs.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	if err := CopyXattrs(src, p); err != nil {
		return err
	}
	return SetTimes(p, st)
}

// SetTimes sets p's access and modification times to st's (not following
// a symlink).
func SetTimes(p string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimensat", Path: p, Err: err}
	}
	return nil
}

// CopyXattrs copies the xattrs of src to dst, but for overlayfs' own
// (layer form markers, never part of a file's content). One that may not
// be set here or that the filesystem does not take is left out: a
// trusted.* one without CAP_SYS_ADMIN (EPERM), one a filesystem does not
// support (ENOTSUP), an SELinux label (the runtime labels files).
// security.selinux is copied where the filesystem takes it; layer tars
// leave it out, so it never reaches an image either way.
func CopyXattrs(src, dst string) error {
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

// MakeSpecial makes at dst a symlink, device, fifo or socket like src
// (lstat st), mode 0600 until CopyMeta gives it src's.
func MakeSpecial(src, dst string, st *unix.Stat_t) error {
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

// ReadNames lists the names in the directory p.
func ReadNames(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", p, err)
	}
	return names, nil
}
