// Package native is a snapshotter without mounts: a writable snapshot is a
// plain folder holding a copy of the union of its parents, and its diff is
// found by comparing the folder with the parents, as containerd's native
// snapshotter and continuity's fs.Changes do. It works where mounting is not
// allowed (rootless without user namespaces, unprivileged pods), at the
// cost of copying the parents for every snapshot.
//
// The diff is written in the form overlayfs' upper directory has, and is
// meant to give the same layer as the overlay snapshotter for the same
// changes (see Snapshot.Diff for how the ambiguous cases are decided).
package native

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/snapshot"
)

// Snapshotter makes plain-folder snapshots below a directory it is given:
// each is a folder snap-* (view-* for a view) with root (the filesystem) and
// diff (its changes, once taken) in it.
type Snapshotter struct {
	dir string
}

var _ snapshot.Snapshotter = (*Snapshotter)(nil)

// New returns a Snapshotter that works below dir, an existing directory
// on the filesystem where the parents' layer directories are (so that
// views can link their files).
func New(dir string) *Snapshotter { return &Snapshotter{dir: dir} }

// Prepare copies the union of parents (bottom first) into a new folder.
// Files are copied, not linked: a RUN may change a file in place.
func (s *Snapshotter) Prepare(ctx context.Context, parents []string) (snapshot.Snapshot, error) {
	dir, err := os.MkdirTemp(s.dir, "snap-")
	if err != nil {
		return nil, fmt.Errorf("new snapshot: %w", err)
	}
	sn := &Snapshot{dir: dir, root: filepath.Join(dir, "root"), parents: distinct(parents)}
	if err := sn.prepare(ctx); err != nil {
		sn.Remove()
		return nil, fmt.Errorf("new snapshot: %w", err)
	}
	return sn, nil
}

func (sn *Snapshot) prepare(ctx context.Context) error {
	if err := os.Mkdir(sn.root, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(sn.root, 0o755); err != nil { // whatever the umask
		return err
	}
	if len(sn.parents) == 0 {
		return nil // the folder is the whole filesystem and its own diff
	}
	m := &materializer{dirs: map[string]uint64{}}
	if err := m.mergeDir(ctx, sn.root, "", rootDirs(sn.parents)); err != nil {
		return err
	}
	sn.dirs = m.dirs
	mark, err := stamp(sn.dir)
	if err != nil {
		return err
	}
	sn.mark = mark
	return nil
}

// Snapshot is a writable plain-folder snapshot (see Snapshotter).
type Snapshot struct {
	dir     string
	root    string
	parents []string // bottom first
	// mark is a time no later than the last change Prepare made and
	// earlier than the first change after it, on the clock the
	// filesystem stamps changes with: an entry whose ctime (or birth
	// time) is not after mark is as Prepare left it.
	mark unix.Timespec
	// dirs are the inode numbers of the directories Prepare made, by
	// path below root: a directory with another inode was made again.
	dirs    map[string]uint64
	removed bool
}

// Root is the snapshot's folder.
func (sn *Snapshot) Root() string { return sn.root }

// Upper is Root: a plain folder is always written directly.
func (sn *Snapshot) Upper() string { return sn.root }

// Seal does nothing: nothing is mounted.
func (sn *Snapshot) Seal() error { return nil }

// Remove removes the snapshot's folder.
func (sn *Snapshot) Remove() error {
	if sn.removed {
		return nil
	}
	if err := os.RemoveAll(sn.dir); err != nil {
		return fmt.Errorf("remove snapshot: %w", err)
	}
	sn.removed = true
	return nil
}

// stamp returns a mark time for a tree just written below dir: it stamps a
// file until the filesystem's clock (which may tick coarsely, every few
// milliseconds) has moved past the stamp, so that every later change gets
// a later ctime than the returned one.
func stamp(dir string) (unix.Timespec, error) {
	p := filepath.Join(dir, "stamp")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return unix.Timespec{}, err
	}
	defer os.Remove(p)
	defer f.Close()
	var first unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &first); err != nil {
		return unix.Timespec{}, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := unix.Fchmod(int(f.Fd()), 0o600); err != nil { // a change: sets ctime
			return unix.Timespec{}, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return unix.Timespec{}, err
		}
		if after(st.Ctim, first.Ctim) {
			return first.Ctim, nil
		}
		if time.Now().After(deadline) {
			return unix.Timespec{}, errors.New("the filesystem's change times do not advance")
		}
		time.Sleep(time.Millisecond)
	}
}

// after reports whether a is later than b.
func after(a, b unix.Timespec) bool {
	return a.Sec > b.Sec || a.Sec == b.Sec && a.Nsec > b.Nsec
}

// View makes a folder holding the union of parents (bottom first) with
// hard links to the layers' files (copies where the filesystem refuses the
// links). Like overlay's, a view of one parent is its directory and a view
// of none an empty folder. Nothing stops a write to a view: callers must
// not write (see snapshot.Snapshotter).
func (s *Snapshotter) View(ctx context.Context, parents []string) (snapshot.View, error) {
	parents = distinct(parents)
	if len(parents) == 1 {
		return &view{root: parents[0]}, nil
	}
	dir, err := os.MkdirTemp(s.dir, "view-")
	if err != nil {
		return nil, fmt.Errorf("new view: %w", err)
	}
	v := &view{root: dir, dir: dir}
	if err := fillView(ctx, dir, parents); err != nil {
		v.Remove()
		return nil, fmt.Errorf("new view: %w", err)
	}
	return v, nil
}

// fillView writes the view of parents into dir; the root directory gets
// the top-most parent's metadata, as an overlay's root shows it.
func fillView(ctx context.Context, dir string, parents []string) error {
	if len(parents) == 0 {
		return os.Chmod(dir, 0o755)
	}
	m := &materializer{link: true}
	if err := m.mergeDir(ctx, dir, "", rootDirs(parents)); err != nil {
		return err
	}
	top := parents[len(parents)-1]
	var st unix.Stat_t
	if err := unix.Lstat(top, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: top, Err: err}
	}
	return fscopy.CopyMeta(dir, top, &st)
}

// distinct is parents (bottom first) with a directory that occurs more than
// once kept only at its top-most place: the upper occurrence applies the
// same changes over everything below, so the union is the same (as
// snapshot.Lowers, bottom first).
func distinct(parents []string) []string {
	out := snapshot.Lowers(parents)
	slices.Reverse(out)
	return out
}

// view is a folder of links, or (dir empty) a parent's directory.
type view struct {
	root, dir string
}

func (v *view) Root() string { return v.root }

func (v *view) Remove() error {
	if v.dir == "" {
		return nil
	}
	if err := os.RemoveAll(v.dir); err != nil {
		return fmt.Errorf("remove view: %w", err)
	}
	v.dir = ""
	return nil
}
