package chroot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountKind is how a run emulates one of Process.Mounts without mount(2).
type mountKind int

const (
	// copyDir is a read-only bind of a directory: a copy, removed
	// afterwards (writes to it are lost).
	copyDir mountKind = iota
	// linkDir is a writable bind of a directory (a cache): hard links to
	// the source's files, and afterwards what the command changed is
	// merged into the source (see mount.merge).
	linkDir
	// emptyDir is a tmpfs: an empty directory, removed afterwards.
	emptyDir
	// copyFile is a read-only bind of a regular file (a secret): a copy,
	// emptied and removed afterwards.
	copyFile
	// linkFile is a bind of a file that is not copied: a writable regular
	// file, a socket (an ssh agent), a fifo or a device, as a hard link;
	// a socket on another filesystem is proxied.
	linkFile
)

// mountPlan is one of Process.Mounts, checked and classified.
type mountPlan struct {
	dest   string // Destination, cleaned
	source string // Source with symlinks resolved; "" for a tmpfs
	kind   mountKind
	// the root of a tmpfs (its mode=, uid= and gid= options)
	mode     uint32
	uid, gid int
}

// planMounts checks and classifies the mounts of a run: binds (of a
// directory or a file) and tmpfs; other types, and a mount on "/", are
// refused.
func planMounts(ms []specs.Mount) ([]mountPlan, error) {
	plans := make([]mountPlan, 0, len(ms))
	for _, m := range ms {
		pl, err := planMount(m)
		if err != nil {
			return nil, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		plans = append(plans, pl)
	}
	return plans, nil
}

func planMount(m specs.Mount) (mountPlan, error) {
	if !path.IsAbs(m.Destination) || path.Clean(m.Destination) == "/" {
		return mountPlan{}, errors.New("the destination must be absolute and not /")
	}
	pl := mountPlan{dest: path.Clean(m.Destination)}
	bind := m.Type == "bind"
	ro := false
	for _, o := range m.Options {
		switch o {
		case "bind", "rbind":
			bind = bind || m.Type == ""
		case "ro":
			ro = true
		case "rw":
			ro = false
		}
	}
	switch {
	case m.Type == "tmpfs":
		pl.kind, pl.mode = emptyDir, 0o1777
		return pl, tmpfsOptions(&pl, m.Options)
	case !bind:
		return mountPlan{}, fmt.Errorf("type %q: chroot isolation emulates bind and tmpfs mounts only", m.Type)
	}
	src, err := filepath.EvalSymlinks(m.Source)
	if err != nil {
		return mountPlan{}, fmt.Errorf("source: %w", err)
	}
	st, err := os.Stat(src)
	if err != nil {
		return mountPlan{}, fmt.Errorf("source: %w", err)
	}
	pl.source = src
	switch {
	case st.IsDir() && ro:
		pl.kind = copyDir
	case st.IsDir():
		pl.kind = linkDir
	case st.Mode().IsRegular() && ro:
		pl.kind = copyFile
	default:
		pl.kind = linkFile
	}
	return pl, nil
}

// tmpfsOptions reads the mode=, uid= and gid= options of a tmpfs; the
// others (size=, nosuid, ...) have no equivalent in a directory.
func tmpfsOptions(pl *mountPlan, opts []string) error {
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "mode":
			var n uint64
			n, err = strconv.ParseUint(v, 8, 32)
			pl.mode = uint32(n) & 0o7777
		case "uid":
			pl.uid, err = strconv.Atoi(v)
		case "gid":
			pl.gid, err = strconv.Atoi(v)
		}
		if err != nil {
			return fmt.Errorf("tmpfs option %q: %w", o, err)
		}
	}
	return nil
}

// mount is a mount emulated in a rootfs: its directory entry (name in the
// directory parent), and what it hid there (moved to the stash).
type mount struct {
	plan   mountPlan
	path   string   // host path of the mount point when it was made
	parent *os.File // the directory the mount point is in (O_PATH)
	name   string
	hidden string           // name in the stash of what was at the mount point, "" when nothing
	times  [2]unix.Timespec // the hidden entry's atime and mtime
	filled bool             // the fill is complete
	// fill records what a linkDir's fill made (see mount.merge); secret
	// holds a copyFile's copy open, to empty it afterwards whatever became
	// of its name; proxy serves a socket on another filesystem.
	fill   map[string]filled
	secret *os.File
	proxy  *sockProxy
	copied bool   // a linkFile that is a copy (a regular file on another filesystem)
	nlink  uint64 // a linked linkFile's links before the fill
}

// addMount makes the mount point of pl in the rootfs (its missing parents
// too, as additions), moves what is there to the stash, and fills it.
// The mount is an addition once what it hides is in the stash, so that
// remove puts that back (and takes away a partial fill) whatever fails
// after.
func (a *additions) addMount(ctx context.Context, pl mountPlan) error {
	if pl.source != "" && within(a.rootfs, pl.source) {
		return fmt.Errorf("the source %s holds the rootfs: a copy of it would hold itself", pl.source)
	}
	p, err := securejoin.SecureJoin(a.rootfs, pl.dest)
	if err != nil {
		return err
	}
	if p == a.rootfs {
		return errors.New("the destination resolves to the root directory")
	}
	dir := filepath.Dir(p)
	if err := a.mkdirAll(strings.TrimPrefix(dir, a.rootfs)); err != nil {
		return err
	}
	a.touch(dir)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: strings.TrimPrefix(dir, a.rootfs), Err: err}
	}
	m := &mount{plan: pl, path: p, parent: os.NewFile(uintptr(fd), dir), name: filepath.Base(p)}
	if err := a.hide(m); err != nil {
		m.parent.Close()
		return err
	}
	a.added = append(a.added, addition{path: p, mnt: m})
	if err := m.make(ctx); err != nil {
		return err
	}
	m.filled = true
	return nil
}

// hide moves what is at the mount point (not following a symlink) to the
// stash, keeping its times.
func (a *additions) hide(m *mount) error {
	var st unix.Stat_t
	err := unix.Fstatat(int(m.parent.Fd()), m.name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &fs.PathError{Op: "lstat", Path: a.rel(m.path), Err: err}
	}
	s, err := a.stashDir()
	if err != nil {
		return err
	}
	name := s.next("hidden")
	if err := unix.Renameat(int(m.parent.Fd()), m.name, s.fd(), name); err != nil {
		return &os.LinkError{Op: "move aside", Old: a.rel(m.path), New: filepath.Join(s.dir, name), Err: err}
	}
	m.hidden, m.times = name, [2]unix.Timespec{st.Atim, st.Mtim}
	return nil
}

// make makes the mount point and fills it from the source.
func (m *mount) make(ctx context.Context) error {
	pfd := int(m.parent.Fd())
	switch m.plan.kind {
	case emptyDir:
		if err := unix.Mkdirat(pfd, m.name, 0o700); err != nil {
			return &fs.PathError{Op: "mkdir", Path: m.path, Err: err}
		}
		if err := unix.Fchownat(pfd, m.name, m.plan.uid, m.plan.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "chown", Path: m.path, Err: err}
		}
		return unix.Fchmodat(pfd, m.name, m.plan.mode, 0)
	case copyDir, linkDir:
		f := &filler{ctx: ctx, link: m.plan.kind == linkDir}
		if f.link {
			unlock, err := lockDir(ctx, m.plan.source)
			if err != nil {
				return err
			}
			defer unlock()
			f.rec = map[string]filled{}
		}
		if err := unix.Mkdirat(pfd, m.name, 0o700); err != nil {
			return &fs.PathError{Op: "mkdir", Path: m.path, Err: err}
		}
		if err := f.tree(m.plan.source, m.path, ""); err != nil {
			return err
		}
		m.fill = f.rec
		return nil
	case copyFile:
		f, err := copySecret(m.plan.source, m.path)
		m.secret = f
		return err
	}
	return m.makeLink()
}

// makeLink makes a linkFile's mount point: a hard link to the source, or
// where the source is on another filesystem, a proxy of a socket or a
// copy of a regular file.
func (m *mount) makeLink() error {
	var st unix.Stat_t
	if err := unix.Stat(m.plan.source, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: m.plan.source, Err: err}
	}
	m.nlink = st.Nlink
	err := unix.Linkat(unix.AT_FDCWD, m.plan.source, int(m.parent.Fd()), m.name, 0)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EMLINK) {
		return &os.LinkError{Op: "link", Old: m.plan.source, New: m.path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		p, perr := newSockProxy(m.plan.source, m.parent, m.name, &st)
		m.proxy = p
		return perr
	case unix.S_IFREG:
		m.copied = true
		return copyEntry(m.plan.source, m.path, &st)
	}
	return fmt.Errorf("%s cannot be linked (%w) and is not a file or socket that could be copied or proxied", m.plan.source, err)
}

// unmount takes the mount away: empties a secret's copy, stops a proxy,
// moves the mount point (whatever the command made of it) out of the
// rootfs, merges a cache's changes into its source, removes it, and puts
// back what it hid. It returns the first error and always tries
// everything.
func (a *additions) unmount(ctx context.Context, m *mount) error {
	var errs []error
	if m.secret != nil {
		errs = append(errs, m.secret.Truncate(0), m.secret.Close())
	}
	if m.proxy != nil {
		m.proxy.close()
	}
	errs = append(errs, a.takeOut(ctx, m))
	if m.hidden != "" {
		errs = append(errs, a.putBack(m))
	}
	errs = append(errs, m.parent.Close())
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("unmount %s: %w", m.plan.dest, err)
		}
	}
	return nil
}

// takeOut moves what is at the mount point to the stash, merges it into
// the source of a linkDir or a copied linkFile, and removes it.
func (a *additions) takeOut(ctx context.Context, m *mount) error {
	s, err := a.stashDir()
	if err != nil {
		return err
	}
	gone := filepath.Join(s.dir, s.next("gone"))
	var st *unix.Stat_t // what was at the mount point; nil: nothing
	switch err := unix.Renameat(int(m.parent.Fd()), m.name, s.fd(), filepath.Base(gone)); {
	case errors.Is(err, unix.ENOENT): // the command removed or moved it
	case err != nil:
		return &os.LinkError{Op: "move out", Old: a.rel(m.path), New: gone, Err: err}
	default:
		defer os.RemoveAll(gone)
		st = &unix.Stat_t{}
		if err := unix.Lstat(gone, st); err != nil {
			return &fs.PathError{Op: "lstat", Path: gone, Err: err}
		}
	}
	switch {
	case m.plan.kind == linkDir && m.filled:
		if st == nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// The command removed the mount point, which a real one
			// refuses (EBUSY) after `rm -rf` has emptied it.
			empty, err := a.emptyTree(m)
			if err != nil {
				return err
			}
			defer os.Remove(empty)
			gone = empty
		}
		err = m.merge(ctx, gone, a)
	case m.plan.kind == linkFile && m.copied && st != nil:
		err = copyBack(gone, m.plan.source)
	case m.plan.kind == linkFile && m.filled && !m.copied:
		err = a.unshareFile(m, st)
	}
	return err
}

// emptyTree makes an empty directory in the stash with the owner and mode
// that a linkDir's fill gave its root.
func (a *additions) emptyTree(m *mount) (string, error) {
	p := filepath.Join(a.stash.dir, a.stash.next("empty"))
	root := m.fill[""]
	if err := os.Mkdir(p, 0o700); err != nil {
		return "", err
	}
	if err := os.Lchown(p, int(root.uid), int(root.gid)); err != nil {
		return p, err
	}
	if err := unix.Chmod(p, root.mode); err != nil {
		return p, &fs.PathError{Op: "chmod", Path: p, Err: err}
	}
	return p, nil
}

// unshareFile gives the rootfs's names of a linked linkFile's source (the
// command linked or moved the mount point elsewhere: EXDEV or EBUSY on a
// real mount) copies of their own. gone (stat st, nil when the command
// removed it) is what was at the mount point.
func (a *additions) unshareFile(m *mount, gone *unix.Stat_t) error {
	var st unix.Stat_t
	if err := unix.Stat(m.plan.source, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: m.plan.source, Err: err}
	}
	ours := uint64(0)
	if gone != nil && inodeOf(gone) == inodeOf(&st) {
		ours = 1
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink <= m.nlink+ours {
		return nil
	}
	return a.unshareRootfs(map[inode]bool{inodeOf(&st): true})
}

// putBack moves what the mount hid back to the mount point, with its
// times. When the command removed the directory it was in, it goes too
// (a real mount point's directory cannot be removed: EBUSY).
func (a *additions) putBack(m *mount) error {
	s := a.stash
	err := unix.Renameat(s.fd(), m.hidden, int(m.parent.Fd()), m.name)
	if errors.Is(err, unix.ENOENT) {
		return os.RemoveAll(filepath.Join(s.dir, m.hidden))
	}
	if err != nil {
		return &os.LinkError{Op: "put back", Old: filepath.Join(s.dir, m.hidden), New: a.rel(m.path), Err: err}
	}
	ts := []unix.Timespec{m.times[0], m.times[1]}
	return unix.UtimesNanoAt(int(m.parent.Fd()), m.name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// within reports whether the path p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// rel is the host path p as the run sees it (inside the rootfs).
func (a *additions) rel(p string) string {
	if r := strings.TrimPrefix(p, a.rootfs); r != p && r != "" {
		return r
	}
	return p
}
