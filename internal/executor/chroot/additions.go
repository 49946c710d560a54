package chroot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/executor"
)

// device is a device node a RUN gets when its rootfs lacks it (runc's
// default devices that need no mount).
type device struct {
	name         string
	major, minor uint32
}

func devices() []device {
	return []device{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}
}

// hostFiles are the host's files a RUN sees when its rootfs has none (runc
// binds them).
func hostFiles() []string { return []string{"/etc/resolv.conf", "/etc/hosts"} }

// additions are the entries prepare added to a rootfs for a run, so that
// remove takes away exactly those (what the command did not replace), and
// the times of the directories they were added to, to restore them.
type additions struct {
	rootfs  string
	added   []addition           // in the order made
	parents map[string]*dirTimes // existing directories entries were made in
	missing []leftOut            // device nodes left out, by reason
	stash   *stash               // where mounts move what they hide; nil until used
}

// leftOut are device nodes left out for one reason.
type leftOut struct {
	why   string
	nodes []string
}

type addition struct {
	path string // host path, symlinks resolved
	id   identity
	dir  bool
	mnt  *mount // a mount, taken away by unmount
}

// identity tells an entry from one made at its path later, which may get
// its inode number once it is freed: device, inode and birth time. Where
// the filesystem records no birth time, the change time stands in for
// files (an addition the command changed in place is then the command's),
// and directories, which prepare changes itself, go by inode alone.
type identity struct {
	dev, ino uint64
	born     unix.StatxTimestamp
}

func identify(p string, dir bool) (identity, error) {
	var sx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_INO|unix.STATX_CTIME|unix.STATX_BTIME, &sx); err != nil {
		return identity{}, err
	}
	id := identity{dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), ino: sx.Ino}
	switch {
	case sx.Mask&unix.STATX_BTIME != 0:
		id.born = sx.Btime
	case !dir:
		id.born = sx.Ctime
	}
	return id, nil
}

// dirTimes are a directory's atime and mtime before prepare and after it.
type dirTimes struct {
	before, prepared [2]unix.Timespec
	havePrepared     bool
}

// prepare adds to rootfs the device nodes and host files a run needs and
// it lacks, then the run's mounts, in order. The additions returned (never
// nil) hold what was made, also when prepare fails.
func prepare(ctx context.Context, rootfs string, mounts []mountPlan) (*additions, error) {
	a := &additions{rootfs: rootfs, parents: map[string]*dirTimes{}}
	// The times as prepare leaves them, also when it fails (the command
	// does not run: whatever changed is prepare's, and remove undoes it).
	defer func() {
		for dir, t := range a.parents {
			t.prepared, t.havePrepared = times(dir)
		}
	}()
	if err := a.addDevices(); err != nil {
		return a, err
	}
	if err := a.addHostFiles(); err != nil {
		return a, err
	}
	for _, pl := range mounts {
		if err := a.addMount(ctx, pl); err != nil {
			return a, fmt.Errorf("mount %s: %w", pl.dest, err)
		}
	}
	return a, nil
}

// addDevices makes the device nodes the rootfs has no entry for (an entry
// of any type, a dangling symlink too, is the rootfs's own and kept).
func (a *additions) addDevices() error {
	dirs := len(a.added)
	if err := a.mkdirAll("/dev"); err != nil {
		a.leaveOut(devices(), fmt.Sprintf("/dev: %v", err))
		return nil
	}
	made := 0
	defer func() {
		// Without a node in it, a /dev made here would only turn a
		// command's "> /dev/null" into a regular file in the layer.
		if made == 0 {
			for i := len(a.added) - 1; i >= dirs; i-- {
				_ = a.removeOne(a.added[i])
			}
			a.added = a.added[:dirs]
		}
	}()
	for _, d := range devices() {
		p, err := securejoin.SecureJoin(a.rootfs, "/dev/"+d.name)
		if err != nil || !missing(p) {
			continue
		}
		a.touch(filepath.Dir(p))
		err = unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor)))
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			a.leaveOut([]device{d}, "mknod is not permitted: no CAP_MKNOD, or a user namespace")
			continue
		}
		if err != nil {
			return fmt.Errorf("make /dev/%s: %w", d.name, err)
		}
		if err := unix.Chmod(p, 0o666); err != nil { // whatever the umask
			_ = unix.Unlink(p)
			return fmt.Errorf("make /dev/%s: %w", d.name, err)
		}
		if err := usable(p); err != nil {
			a.leaveOut([]device{d}, fmt.Sprintf("they cannot be opened: %v; a nodev filesystem, or a device cgroup", err))
			if err := unix.Unlink(p); err != nil {
				return fmt.Errorf("remove /dev/%s: %w", d.name, err)
			}
			continue
		}
		if err := a.record(p, false); err != nil { // once it is as the run sees it
			_ = unix.Unlink(p)
			return err
		}
		made++
	}
	return nil
}

// usable opens the device node p to see whether a RUN can use it; a
// terminal without a controlling terminal (ENXIO) is usable.
func usable(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENXIO) {
		return nil
	}
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// leaveOut records that devs are left out, and why.
func (a *additions) leaveOut(devs []device, why string) {
	i := slices.IndexFunc(a.missing, func(l leftOut) bool { return l.why == why })
	if i < 0 {
		a.missing = append(a.missing, leftOut{why: why})
		i = len(a.missing) - 1
	}
	for _, d := range devs {
		a.missing[i].nodes = append(a.missing[i].nodes, "/dev/"+d.name)
	}
}

// missingNodes says which device nodes are left out, and why.
func (a *additions) missingNodes() string {
	var parts []string
	for _, l := range a.missing {
		parts = append(parts, strings.Join(l.nodes, ", ")+" ("+l.why+")")
	}
	return strings.Join(parts, "; ")
}

// addHostFiles copies the host's resolv.conf and hosts into the rootfs
// when it has none: where the rootfs's file is a symlink to a missing file,
// that file is made, as runc makes a mount point. A parent that is not a
// directory leaves the file out.
func (a *additions) addHostFiles() error {
	for _, f := range hostFiles() {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // the host has none
		}
		p, err := securejoin.SecureJoin(a.rootfs, f)
		if err != nil || !missing(p) {
			continue
		}
		if err := a.mkdirAll(strings.TrimPrefix(filepath.Dir(p), a.rootfs)); err != nil {
			continue
		}
		a.touch(filepath.Dir(p))
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("copy the host's %s: %w", f, err)
		}
		file := os.NewFile(uintptr(fd), p)
		err = file.Chmod(0o644) // whatever the umask
		if err == nil {
			_, err = file.Write(data)
		}
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = a.record(p, false) // once it is as the run sees it
		}
		if err != nil {
			_ = unix.Unlink(p)
			return fmt.Errorf("copy the host's %s: %w", f, err)
		}
	}
	return nil
}

// missing reports whether nothing is at p (not even a dangling symlink).
func missing(p string) bool {
	_, err := os.Lstat(p)
	return errors.Is(err, os.ErrNotExist)
}

// mkdirAll makes dir (absolute in the rootfs) and its missing parents,
// owned by root, recording each.
func (a *additions) mkdirAll(dir string) error {
	p, err := securejoin.SecureJoin(a.rootfs, dir)
	if err != nil {
		return err
	}
	q := p // the nearest existing directory, which gets the first new one
	for q != a.rootfs && missing(q) {
		q = filepath.Dir(q)
	}
	if q != p {
		a.touch(q)
	}
	created, err := executor.MkdirAllOwned(a.rootfs, dir, 0, 0)
	for _, c := range created {
		if rerr := a.record(c, true); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

// touch records the times of dir, an existing directory that an entry is
// going to be made in, unless it is recorded or made by prepare.
func (a *additions) touch(dir string) {
	if _, ok := a.parents[dir]; ok {
		return
	}
	for _, ad := range a.added {
		if ad.path == dir {
			return
		}
	}
	if t, ok := times(dir); ok {
		a.parents[dir] = &dirTimes{before: t}
	}
}

// record adds p, just made, to the additions.
func (a *additions) record(p string, dir bool) error {
	id, err := identify(p, dir)
	if err != nil {
		return fmt.Errorf("record %s: %w", strings.TrimPrefix(p, a.rootfs), err)
	}
	a.added = append(a.added, addition{path: p, id: id, dir: dir})
	return nil
}

// remove takes away, last made first, every addition that is still what
// was made: at the same path (no parent replaced by a symlink), the same
// inode (not replaced by the command), and for a directory, empty; and
// every mount (see unmount), with ctx for the locks of cache sources (a
// canceled run still merges what its command wrote). Then the directories
// they were made in get their times back: those of before prepare when the
// command did not change their entries, else those the command left. It
// returns the first error and always tries everything.
func (a *additions) remove(ctx context.Context) error {
	if a == nil {
		return nil
	}
	// The times to restore, decided before removing changes them.
	restore := map[string][2]unix.Timespec{}
	for dir, t := range a.parents {
		now, ok := times(dir)
		switch {
		case !ok:
		case t.havePrepared && now[1] == t.prepared[1]:
			restore[dir] = t.before
		default:
			restore[dir] = now
		}
	}
	var first error
	for i := len(a.added) - 1; i >= 0; i-- {
		var err error
		if m := a.added[i].mnt; m != nil {
			err = a.unmount(ctx, m)
		} else {
			err = a.removeOne(a.added[i])
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if err := a.removeStash(); err != nil && first == nil {
		first = err
	}
	for dir, t := range restore {
		if missing(dir) {
			continue
		}
		ts := []unix.Timespec{t[0], t[1]}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, dir, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && first == nil {
			first = fmt.Errorf("restore the times of %s: %w", strings.TrimPrefix(dir, a.rootfs), err)
		}
	}
	return first
}

// removeOne removes ad if it is still what prepare made.
func (a *additions) removeOne(ad addition) error {
	rel := strings.TrimPrefix(ad.path, a.rootfs)
	if real, err := securejoin.SecureJoin(a.rootfs, rel); err != nil || real != ad.path {
		return nil
	}
	if id, err := identify(ad.path, ad.dir); err != nil || id != ad.id {
		return nil // gone, or made again by the command: the command's
	}
	if ad.dir {
		err := unix.Rmdir(ad.path)
		if err == nil || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			return nil // a directory the command wrote in is the command's
		}
		return fmt.Errorf("remove %s: %w", rel, err)
	}
	if err := unix.Unlink(ad.path); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", rel, err)
	}
	return nil
}

// times returns the atime and mtime of p.
func times(p string) ([2]unix.Timespec, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return [2]unix.Timespec{}, false
	}
	return [2]unix.Timespec{st.Atim, st.Mtim}, true
}
