package fscopy

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// layerLinks is the state of a copy's hardlinks from source layers.
type layerLinks struct {
	rootDev uint64             // device of the destination, for hardlinks from source layers
	noLinks bool               // hardlinks from source layers are impossible here
	layerFD map[string]int     // open O_PATH descriptors of source layer dirs
	linked  map[[2]uint64]bool // layer files this copy has hardlinked once already
	linkMu  sync.Mutex         // guards linked and deferred, which parallel copies of files use

	// upper is the upper directory of the overlay mounted at the
	// destination, when known: layer files are then linked there after the
	// unmount (deferred, by path below upper), not through the mount.
	upper    string
	deferred map[string]deferredLink
}

// deferredLink is a layer file to link over the empty placeholder a copy
// made through the overlay; the file must still be the one checked (same
// inode and size on the upper directory's filesystem).
type deferredLink struct {
	layer, rel string // the layer directory and the path below it
	dev, ino   uint64
	size       int64
}

// linkFromLayer hardlinks dst to the file that srcHost shows when that file
// lives in one of the source's immutable layers on rootfs's filesystem, and
// reports whether it did. The caller has checked that the copy would get the
// source's owner and mode; its mtime is kept anyway. Each layer file is
// linked at most once per copy, so two destinations of one source file stay
// two files (as a copy makes them), and a later step can change the linked
// file only through overlayfs, which copies it up first.
//
// Through an overlay mount (c.upper set) the link cannot be made yet: dst
// is created empty, with the source's owner, mode and times, and the link
// is recorded for finishLinks.
func (c *copier) linkFromLayer(srcHost string, fi os.FileInfo, st *syscall.Stat_t, dst string) bool {
	layers := c.src.Layers
	if len(layers) == 0 || c.noLinks {
		return false
	}
	rel, ok := strings.CutPrefix(srcHost, c.src.Root)
	rel = strings.TrimPrefix(rel, "/")
	if !ok || rel == "" {
		return false
	}
	if _, ok := c.destDev(); !ok {
		return false
	}
	// The top-most layer that has an entry at rel is what srcHost shows
	// (through overlayfs, which reports the lower file's inode number when
	// all layers share a filesystem); anything unexpected means: copy. The
	// file is opened without following any symlink and linked by its
	// descriptor, so what is linked is what was checked.
	for i := len(layers) - 1; i >= 0; i-- {
		fd, err := c.openInLayer(layers[i], rel, unix.O_PATH)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			if errors.Is(err, unix.ENOSYS) {
				c.noLinks = true // no openat2: never link
			}
			return false
		}
		defer unix.Close(fd)
		var ls unix.Stat_t
		if err := unix.Fstat(fd, &ls); err != nil {
			return false
		}
		if ls.Dev != c.rootDev {
			c.noLinks = true // the layers are on another filesystem
			return false
		}
		if ls.Mode&unix.S_IFMT != unix.S_IFREG || ls.Ino != st.Ino || ls.Size != st.Size {
			return false
		}
		key := [2]uint64{ls.Dev, ls.Ino}
		if !c.claim(key) {
			return false
		}
		if c.upper != "" {
			if !c.placeholder(dst, fi, int(st.Uid), int(st.Gid), fi.Mode(), deferredLink{layer: layers[i], rel: rel, dev: ls.Dev, ino: ls.Ino, size: ls.Size}) {
				return false
			}
		} else if err := unix.Linkat(fd, "", unix.AT_FDCWD, dst, unix.AT_EMPTY_PATH); err != nil {
			return false // EXDEV, EMLINK, ...: copy instead
		}
		return true
	}
	return false
}

// destDev returns the device of the copy's destination (of its upper
// directory when known), where a hardlinked file must live.
func (c *copier) destDev() (uint64, bool) {
	if c.rootDev == 0 && !c.noLinks {
		var rs unix.Stat_t
		on := c.rootfs
		if c.upper != "" {
			on = c.upper
		}
		if err := unix.Stat(on, &rs); err != nil {
			c.noLinks = true
			return 0, false
		}
		c.rootDev = rs.Dev
	}
	return c.rootDev, !c.noLinks
}

// upperRel is dst (a path below rootfs) relative to rootfs, which is where
// overlayfs puts it in the upper directory.
func (c *copier) upperRel(dst string) string {
	rel, err := filepath.Rel(c.rootfs, dst)
	if err != nil {
		return dst
	}
	return rel
}

// placeholder creates dst empty through the overlay with the owner and
// mode the copy gives it and the source file's times (fi), and records the
// link d to make over it; on any failure dst is removed again and the
// caller copies the file.
func (c *copier) placeholder(dst string, fi os.FileInfo, uid, gid int, mode os.FileMode, d deferredLink) bool {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false
	}
	f.Close()
	if err := applyMeta(dst, uid, gid, mode, fi, true); err != nil {
		os.Remove(dst)
		return false
	}
	c.linkMu.Lock()
	defer c.linkMu.Unlock()
	if c.deferred == nil {
		c.deferred = map[string]deferredLink{}
	}
	c.deferred[c.upperRel(dst)] = d
	return true
}

// claim marks the layer file key as linked by this copy and reports
// whether it was not yet: each layer file is linked at most once.
func (c *copier) claim(key [2]uint64) bool {
	c.linkMu.Lock()
	defer c.linkMu.Unlock()
	if c.linked[key] {
		return false
	}
	if c.linked == nil {
		c.linked = map[[2]uint64]bool{}
	}
	c.linked[key] = true
	return true
}

// finishLinks replaces, in the unmounted upper directory, every placeholder
// still there (an empty regular file) by a hardlink to its layer file,
// keeping the parent directory's times; where the placeholder has other
// names (hardlinks in the source), the layer file changed or linking fails,
// the placeholder is filled with the file's data instead.
func (c *copier) finishLinks() error {
	defer c.closeLayers()
	rels := make([]string, 0, len(c.deferred))
	for r := range c.deferred {
		rels = append(rels, r)
	}
	sort.Strings(rels)
	for n, r := range rels {
		d := c.deferred[r]
		p := filepath.Join(c.upper, r)
		var ps unix.Stat_t
		if err := unix.Lstat(p, &ps); err != nil || ps.Mode&unix.S_IFMT != unix.S_IFREG || ps.Size != 0 {
			continue // replaced or removed by a later source
		}
		// More than one link: the copy linked another destination to the
		// placeholder (the source had hardlinks); filling it keeps them one file.
		if ps.Nlink == 1 && c.linkOver(d, p, n) == nil {
			continue
		}
		if err := c.fillPlaceholder(d, p); err != nil {
			return fmt.Errorf("copy %s: %w", path.Join("/", r), err)
		}
	}
	return nil
}

// linkOver links d's layer file at p through a temporary name in p's
// directory and a rename over the placeholder, then puts the directory's
// times back as the copy left them.
func (c *copier) linkOver(d deferredLink, p string, n int) error {
	fd, err := c.openInLayer(d.layer, d.rel, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var ls unix.Stat_t
	if err := unix.Fstat(fd, &ls); err != nil {
		return err
	}
	if ls.Dev != d.dev || ls.Ino != d.ino || ls.Size != d.size || ls.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("layer file changed")
	}
	dir := filepath.Dir(p)
	var ds unix.Stat_t
	if err := unix.Lstat(dir, &ds); err != nil {
		return err
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".strata-link-%d-%d", os.Getpid(), n))
	if err := unix.Linkat(fd, "", unix.AT_FDCWD, tmp, unix.AT_EMPTY_PATH); err != nil {
		return err
	}
	if err := unix.Rename(tmp, p); err != nil {
		unix.Unlink(tmp)
		return err
	}
	ts := []unix.Timespec{ds.Atim, ds.Mtim}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dir, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// fillPlaceholder writes d's layer file's data into the placeholder p and
// gives p the layer file's times back.
func (c *copier) fillPlaceholder(d deferredLink, p string) error {
	fd, err := c.openInLayer(d.layer, d.rel, unix.O_RDONLY)
	if err != nil {
		return err
	}
	in := os.NewFile(uintptr(fd), d.rel)
	defer in.Close()
	var ls unix.Stat_t
	if err := unix.Fstat(fd, &ls); err != nil {
		return err
	}
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if err := copyData(out, in, nil); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ls.Atim, ls.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// openInLayer opens rel below the directory layer with flags (O_PATH to
// check and link it, O_RDONLY to read it), following no symlink on the way
// (ENOENT when there is nothing there). The layer directory is opened once
// per copy.
func (c *copier) openInLayer(layer, rel string, flags int) (int, error) {
	dfd, ok := c.layerFD[layer]
	if !ok {
		var err error
		if dfd, err = unix.Open(layer, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return -1, err
		}
		if c.layerFD == nil {
			c.layerFD = map[string]int{}
		}
		c.layerFD[layer] = dfd
	}
	return openBeneath(dfd, rel, flags)
}

// openBeneath opens rel below the directory dfd with flags, following no
// symlink on the way (ENOENT when there is nothing there).
func openBeneath(dfd int, rel string, flags int) (int, error) {
	return unix.Openat2(dfd, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// closeLayers closes the layer directories openInLayer opened.
func (c *copier) closeLayers() {
	for _, fd := range c.layerFD {
		unix.Close(fd)
	}
	c.layerFD = nil
}
