package native

import (
	"errors"
	"io/fs"
	"path/filepath"
	"sort"

	"github.com/strata-build/strata/internal/fscopy"
	"golang.org/x/sys/unix"
)

// A layer directory is in overlayfs lower form: a whiteout (character device
// 0/0) deletes a path of the layers below, a directory with the overlay
// opaque xattr hides what the layers below have in it. Reading the union of
// layers follows overlayfs' lookup: top-most layer first, a non-directory or
// an opaque directory ends the lookup, directories of lower layers merge.

// Opaque xattrs: trusted.* as overlayfs writes them as root, user.* as it
// does with the userxattr option (and as native writes them when it may not
// set trusted.* xattrs).
const (
	xattrOpaqueTrusted = "trusted.overlay.opaque"
	xattrOpaqueUser    = "user.overlay.opaque"
)

// layerDir is a directory of one parent layer: its path and the parent's
// index (bottom first), which keeps hard links of different layers apart.
type layerDir struct {
	path  string
	layer int
}

// unionEntry is one visible entry of a union directory.
type unionEntry struct {
	name string
	// at is the entry in the layers that make it, top-most first: one
	// place for a non-directory, for a directory every layer directory
	// merged into it (down to the first opaque one).
	at []layerDir
	st unix.Stat_t // of at[0]
}

func (e *unionEntry) isDir() bool { return e.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// top is the path of what the entry shows.
func (e *unionEntry) top() string { return e.at[0].path }

func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// isOpaque reports whether the directory p carries the overlay opaque xattr.
func isOpaque(p string) bool {
	buf := make([]byte, 8)
	for _, k := range []string{xattrOpaqueTrusted, xattrOpaqueUser} {
		n, err := unix.Lgetxattr(p, k, buf)
		if err == nil && string(buf[:n]) == "y" {
			return true
		}
	}
	return false
}

// listUnion returns the visible entries of the union of the directories vis
// (top-most first), sorted by name.
func listUnion(vis []layerDir) ([]unionEntry, error) {
	byName := map[string]int{}
	closed := map[string]bool{} // decided: nothing further down counts
	var out []unionEntry
	for _, d := range vis {
		names, err := fscopy.ReadNames(d.path)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if closed[n] {
				continue
			}
			var st unix.Stat_t
			p := filepath.Join(d.path, n)
			if err := unix.Lstat(p, &st); err != nil {
				return nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
			}
			i, seen := byName[n]
			isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			switch {
			case !seen && isWhiteout(&st):
				closed[n] = true
				continue
			case !seen:
				byName[n] = len(out)
				out = append(out, unionEntry{name: n, at: []layerDir{{p, d.layer}}, st: st})
				if !isDir || isOpaque(p) {
					closed[n] = true
				}
			case isDir: // below a directory seen above: merged
				out[i].at = append(out[i].at, layerDir{p, d.layer})
				if isOpaque(p) {
					closed[n] = true
				}
			default: // a whiteout or non-directory below a directory ends it
				closed[n] = true
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// lookupUnion finds the visible entry name in the union of vis (top-most
// first), or nil when there is none.
func lookupUnion(vis []layerDir, name string) (*unionEntry, error) {
	var e *unionEntry
	for _, d := range vis {
		var st unix.Stat_t
		p := filepath.Join(d.path, name)
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if e == nil {
			if isWhiteout(&st) {
				return nil, nil
			}
			e = &unionEntry{name: name, at: []layerDir{{p, d.layer}}, st: st}
			if !isDir || isOpaque(p) {
				return e, nil
			}
			continue
		}
		if !isDir {
			return e, nil
		}
		e.at = append(e.at, layerDir{p, d.layer})
		if isOpaque(p) {
			return e, nil
		}
	}
	return e, nil
}

// rootDirs are the layer roots of parents (bottom first) as a union's
// directories, top-most first.
func rootDirs(parents []string) []layerDir {
	vis := make([]layerDir, 0, len(parents))
	for i := len(parents) - 1; i >= 0; i-- {
		vis = append(vis, layerDir{path: parents[i], layer: i})
	}
	return vis
}
