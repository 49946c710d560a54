package chroot

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// stash is a directory on the rootfs's mount, outside the rootfs where it
// can be, where a run's mounts move what they hide (so the command does not
// see it in the directory it was in) and what they take out of the rootfs
// afterwards.
type stash struct {
	dir      string
	f        *os.File
	n        int
	inRootfs bool // no place outside: a hidden directory at the rootfs's root
}

func (s *stash) fd() int { return int(s.f.Fd()) }

// next returns a name not used yet in the stash.
func (s *stash) next(prefix string) string {
	s.n++
	return prefix + "-" + strconv.Itoa(s.n)
}

// stashDir returns the run's stash, made on first use: in the directory
// that holds the rootfs when that is on the rootfs's mount (a rename
// between them works), else at the rootfs's root.
func (a *additions) stashDir() (*stash, error) {
	if a.stash != nil {
		return a.stash, nil
	}
	s := &stash{}
	outside := filepath.Dir(a.rootfs)
	if sameMount(outside, a.rootfs) {
		s.dir, _ = os.MkdirTemp(outside, ".strata-mounts-")
	}
	if s.dir == "" {
		a.touch(a.rootfs)
		dir, err := os.MkdirTemp(a.rootfs, ".strata-mounts-")
		if err != nil {
			return nil, fmt.Errorf("make a directory for what mounts hide: %w", err)
		}
		s.dir, s.inRootfs = dir, true
	}
	f, err := os.Open(s.dir)
	if err != nil {
		os.Remove(s.dir)
		return nil, err
	}
	s.f = f
	a.stash = s
	return s, nil
}

// removeStash removes the stash and whatever is left in it.
func (a *additions) removeStash() error {
	if a.stash == nil {
		return nil
	}
	a.stash.f.Close()
	if err := os.RemoveAll(a.stash.dir); err != nil {
		return fmt.Errorf("remove %s: %w", a.stash.dir, err)
	}
	a.stash = nil
	return nil
}

// sameMount reports whether the directories a and b are on one mount
// (where the kernel says so; else on one device).
func sameMount(a, b string) bool {
	var sa, sb unix.Statx_t
	const mask = unix.STATX_MNT_ID
	if unix.Statx(unix.AT_FDCWD, a, unix.AT_SYMLINK_NOFOLLOW, mask, &sa) != nil ||
		unix.Statx(unix.AT_FDCWD, b, unix.AT_SYMLINK_NOFOLLOW, mask, &sb) != nil {
		return false
	}
	if sa.Mask&sb.Mask&unix.STATX_MNT_ID != 0 {
		return sa.Mnt_id == sb.Mnt_id
	}
	return sa.Dev_major == sb.Dev_major && sa.Dev_minor == sb.Dev_minor
}
