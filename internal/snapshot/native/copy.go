package native

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/strata-build/strata/internal/fscopy"
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
		if err := fscopy.CopyMeta(p, e.top(), &e.st); err != nil {
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
		return fscopy.CopyMeta(p, e.top(), st)
	}
	if err := fscopy.MakeSpecial(e.top(), p, st); err != nil {
		return err
	}
	return fscopy.CopyMeta(p, e.top(), st)
}
