package native

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/layer"
)

// Diff compares the snapshot's folder with the union of its parents and
// writes the changes into a new folder in overlayfs upper form, the way the
// overlay snapshotter's upper directory holds them once pruned
// (layer.PruneUnchanged):
//
//   - an entry that is new, or changed by layer.Unchanged's rules (type,
//     mode, owner, xattrs, size, mtime, and content or link target when the
//     mtimes are whole seconds), is a hard link to the folder's entry;
//   - a deleted entry is a whiteout (character device 0/0);
//   - a directory made again after Prepare (another inode, or a birth time
//     after it) where the parents have an entry, and a directory that
//     replaced a non-directory, is opaque and holds everything below it, as
//     overlayfs makes a directory created over a whiteout;
//   - a directory is there when something below it changed or its own
//     mode, owner or xattrs did (not for its times alone).
//
// An entry Prepare wrote and nothing changed since (its ctime is not after
// the snapshot's mark) is not compared at all, and a directory whose
// entries were not added or removed is not listed in the parents: the walk
// reads the folder and looks up in the parents only what was touched.
//
// Without parents the folder is the whole filesystem and is its own diff.
//
// Where overlayfs differs: a file that has more than one name in a layer is
// one file in the folder, so a change in place (not a rename over it) made
// through one name shows through the others and the diff holds all of them,
// where overlayfs copies up only the name written.
func (sn *Snapshot) Diff(ctx context.Context) (string, error) {
	if len(sn.parents) == 0 {
		return sn.root, nil
	}
	out := filepath.Join(sn.dir, "diff")
	if err := os.Mkdir(out, 0o755); err != nil {
		return "", fmt.Errorf("diff snapshot: %w", err)
	}
	d := &differ{ctx: ctx, sn: sn, out: out}
	var rootSt unix.Stat_t
	if err := unix.Lstat(sn.root, &rootSt); err != nil {
		return "", &fs.PathError{Op: "lstat", Path: sn.root, Err: err}
	}
	if err := d.dir("", &rootSt, rootDirs(sn.parents), &outDir{made: true}); err != nil {
		return "", fmt.Errorf("diff snapshot: %w", err)
	}
	return out, nil
}

type differ struct {
	ctx context.Context
	sn  *Snapshot
	out string
}

// outDir is a directory of the diff, made when the first change below it
// is written.
type outDir struct {
	parent *outDir
	rel    string
	made   bool
}

// dir writes the changes below the folder's directory rel, whose
// counterpart in the parents is the union of vis, into o; st is its stat.
func (d *differ) dir(rel string, st *unix.Stat_t, vis []layerDir, o *outDir) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	src := filepath.Join(d.sn.root, rel)
	names, err := fscopy.ReadNames(src)
	if err != nil {
		return err
	}
	sort.Strings(names)
	var union map[string]*unionEntry
	if after(st.Ctim, d.sn.mark) {
		// Entries may have been added or removed: what the parents have
		// and the folder not is deleted.
		ents, err := listUnion(vis)
		if err != nil {
			return err
		}
		union = make(map[string]*unionEntry, len(ents))
		for i := range ents {
			union[ents[i].name] = &ents[i]
			if _, found := sort.Find(len(names), func(j int) int { return compare(ents[i].name, names[j]) }); !found {
				if err := d.whiteout(o, filepath.Join(rel, ents[i].name)); err != nil {
					return err
				}
			}
		}
	}
	for _, n := range names {
		lookup := func() (*unionEntry, error) {
			if union != nil {
				return union[n], nil
			}
			return lookupUnion(vis, n)
		}
		if err := d.entry(filepath.Join(rel, n), lookup, o); err != nil {
			return err
		}
	}
	return nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// entry writes the change, if any, of the folder's entry rel in the
// directory o; lookup finds its counterpart in the parents.
func (d *differ) entry(rel string, lookup func() (*unionEntry, error), o *outDir) error {
	p := filepath.Join(d.sn.root, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		u, err := lookup()
		if err != nil {
			return err
		}
		switch {
		case u == nil:
			return d.whole(rel, o, false)
		case !u.isDir() || d.recreated(rel, p, &st):
			return d.whole(rel, o, true)
		}
		child := &outDir{parent: o, rel: rel}
		if err := d.dir(rel, &st, u.at, child); err != nil {
			return err
		}
		if !child.made {
			if !after(st.Ctim, d.sn.mark) {
				return nil // its owner, mode, xattrs and entries as Prepare made them
			}
			same, err := layer.Unchanged(p, u.top())
			if err != nil || same {
				return err
			}
			if err := d.make(child); err != nil {
				return err
			}
		}
		return fscopy.SetTimes(filepath.Join(d.out, rel), &st)
	}
	if !after(st.Ctim, d.sn.mark) {
		return nil // as Prepare wrote it
	}
	u, err := lookup()
	if err != nil {
		return err
	}
	if u != nil && !u.isDir() {
		same, err := layer.Unchanged(p, u.top())
		if err != nil || same {
			return err
		}
	}
	if err := d.make(o); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		// No layer holds a socket, but overlayfs' upper directory has it,
		// so its directory is in the layer.
		return nil
	}
	return d.link(rel, &st)
}

// recreated reports whether the directory rel (at p, with stat st) was
// made after Prepare: Prepare made no directory there, or one with another
// inode, or (where the filesystem records birth times) it was born after
// the mark, which tells a new directory that got a freed inode number.
func (d *differ) recreated(rel, p string, st *unix.Stat_t) bool {
	if ino, ok := d.sn.dirs[rel]; !ok || ino != st.Ino {
		return true
	}
	var sx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &sx); err == nil && sx.Mask&unix.STATX_BTIME != 0 {
		return after(unix.Timespec{Sec: sx.Btime.Sec, Nsec: int64(sx.Btime.Nsec)}, d.sn.mark)
	}
	return false
}

// whole writes the folder's entry rel and everything below it into o; a
// directory is made opaque when asked.
func (d *differ) whole(rel string, o *outDir, opaque bool) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	p := filepath.Join(d.sn.root, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return nil
	case unix.S_IFDIR:
	default:
		if err := d.make(o); err != nil {
			return err
		}
		return d.link(rel, &st)
	}
	child := &outDir{parent: o, rel: rel}
	if err := d.make(child); err != nil {
		return err
	}
	dst := filepath.Join(d.out, rel)
	if opaque {
		if err := layer.SetOpaque(dst); err != nil {
			return err
		}
	}
	names, err := fscopy.ReadNames(p)
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		if err := d.whole(filepath.Join(rel, n), child, false); err != nil {
			return err
		}
	}
	return fscopy.SetTimes(dst, &st)
}

// make makes the diff's directory o (and its parents) with the owner, mode
// and xattrs of the folder's directory; its times are set once the
// entries below it are written.
func (d *differ) make(o *outDir) error {
	if o.made {
		return nil
	}
	if err := d.make(o.parent); err != nil {
		return err
	}
	src, dst := filepath.Join(d.sn.root, o.rel), filepath.Join(d.out, o.rel)
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: src, Err: err}
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	if err := fscopy.CopyMeta(dst, src, &st); err != nil {
		return err
	}
	o.made = true
	return nil
}

// link puts the folder's entry rel (not a directory) into the diff: a hard
// link, or where the filesystem refuses one (too many links), a copy.
func (d *differ) link(rel string, st *unix.Stat_t) error {
	src, dst := filepath.Join(d.sn.root, rel), filepath.Join(d.out, rel)
	err := unix.Link(src, dst)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EMLINK) && !errors.Is(err, unix.EPERM) {
		return &os.LinkError{Op: "link", Old: src, New: dst, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		err = fscopy.CopyFile(src, dst)
	} else {
		err = fscopy.MakeSpecial(src, dst, st)
	}
	if err != nil {
		return err
	}
	return fscopy.CopyMeta(dst, src, st)
}

// whiteout records the deletion of rel in the diff's directory o.
func (d *differ) whiteout(o *outDir, rel string) error {
	if err := d.make(o); err != nil {
		return err
	}
	p := filepath.Join(d.out, rel)
	if err := unix.Mknod(p, unix.S_IFCHR, 0); err != nil {
		return &fs.PathError{Op: "mknod whiteout", Path: p, Err: err}
	}
	return nil
}
