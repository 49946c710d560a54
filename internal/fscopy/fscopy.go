// Package fscopy copies files from one directory tree into another the way
// Docker's COPY and ADD do: directories by their contents, hardlinks kept
// within a copy, owners (kept from the source, or root, or --chown), modes
// (kept, or --chmod), modification times, sparse files, --parents,
// --exclude with "!" exceptions, and archives extracted for ADD. A file of
// an immutable source layer may be hardlinked instead of copied (see
// Source.Layers and Target.Upper). Extended attributes are not copied (a
// file linked from a layer is the layer's inode, and keeps its own).
//
// Walk is the filtered walk the copy makes: a cache key made from what Walk
// visits is made from exactly the files the copy reads.
//
// The package knows nothing of Dockerfiles or builds: callers resolve the
// source patterns to Items and the --chown value to an Owner.
package fscopy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sync/errgroup"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/layer"
)

// Owner is a numeric uid:gid pair.
type Owner struct{ UID, GID int }

// Excluder leaves paths of a source out (a .dockerignore's rules): rel is
// slash separated and relative to the source's root, without a leading
// "/". *buildctx.Context and *buildctx.Tree are Excluders.
type Excluder interface {
	Excluded(rel string) bool
}

// Source is a directory tree that files are copied from.
type Source struct {
	// Root is the tree's directory on the host.
	Root string
	// Name begins the errors about the source's files ("COPY source not
	// found in build context": `...: "a" is a dangling symlink`).
	Name string
	// KeepOwner keeps the files' owners; without it (a build context) they
	// become 0:0. Options.Owner overrides both.
	KeepOwner bool
	// Ignore, when set, leaves paths out of every walk of the tree (the
	// build context's .dockerignore rules).
	Ignore Excluder
	// Layers, bottom first, are the directories Root shows (Root is one of
	// them or an overlay of them) when they are immutable: a regular file
	// found in one of them may be hardlinked into the destination instead
	// of copied, when the copy would give it the same owner and mode.
	Layers []string
	// Sums, when set, is the tree's stat cache of content checksums (the
	// build context's): with Record, the copy records the checksum of
	// every regular file it copies from the tree, computed on the same read
	// (Sums.Record); a Target.Previous is used only for files it knows.
	Sums   *buildctx.Sums
	Record bool
}

// Item is one resolved source of a copy: a file, symlink or directory of a
// Source. A directory is copied by its contents; a symlink is followed
// within its Source's root.
type Item struct {
	Source *Source     // the tree the item is in (required)
	Rel    string      // path in the source, cleaned, with a leading "/"
	Host   string      // host path of Rel
	Info   os.FileInfo // Lstat of Host
	// Keep is the path kept below the destination with Options.Parents.
	Keep string
	// NoUnpack keeps an archive a file with Options.Unpack.
	NoUnpack bool
}

// Options are how a copy treats its items.
type Options struct {
	Owner   *Owner // every file and created parent gets it (--chown)
	Chmod   *Chmod // every file and created parent gets it (--chmod)
	Exclude []string
	// Parents puts each item at dest/Item.Keep (COPY --parents).
	Parents bool
	// Unpack extracts an item that is a local archive into dest (ADD).
	Unpack bool
	// Bound is what one extracted archive may hold.
	Bound layer.ApplyOptions
	// Serial writes one file at a time and gives a directory its times when
	// it makes it, not once everything below it is written, so the writes
	// below move its mtime: what --output type=local and the seeding of a
	// cache mount have always done. COPY and ADD do not set it.
	Serial bool
}

// Target is where a copy writes: the tree Root and, when Root is an
// overlay mount, its upper directory Upper ("" when unknown or none).
type Target struct {
	Root  string
	Upper string
	// Previous, when set, is an earlier result of this copy that unchanged
	// files are hardlinked from (see Previous).
	Previous *Previous
	// Sums, when set, gets the checksums of the regular files written
	// whose content is known: the Files of a later copy's Previous.
	Sums *FileSums
}

// Copy copies items into to.Root at dest (absolute in that tree; a trailing
// "/" or "/." means a directory) as Docker's COPY does: a directory item by
// its contents, other items into dest when it is (or names) a directory,
// else as dest. Items are copied in order, each seeing what the ones before
// it made (so several items to a dest without a trailing slash go into it
// once an earlier directory item made it, else each replaces it), and a
// later one wins a path two write, as in BuildKit; missing parents of dest are created with o's owner and mode.
//
// When to.Upper is set and to.Root is an overlay mount of it, files that
// can be hardlinked from their source's layers are created empty through
// the mount (so that overlayfs resolves their paths and copies up their
// parents) and linked in place by the returned finish, which must run once
// the overlay is unmounted: the upper directory of a mounted overlay must
// not be changed underneath it. finish is nil when there is nothing to do.
func Copy(ctx context.Context, to Target, items []Item, dest string, o Options) (finish func() error, err error) {
	destDir := strings.HasSuffix(dest, "/") || strings.HasSuffix(dest, "/.") || dest == "."
	dest = path.Clean(dest)
	if dest == "/" {
		destDir = true
	}
	excl, err := buildctx.NewFilter(o.Exclude)
	if err != nil {
		return nil, fmt.Errorf("--exclude: %w", err)
	}
	c := &copier{rootfs: to.Root, o: o, links: map[[2]uint64]string{}, parentOwner: parentOwner(o), parentMode: parentMode(o), exclude: excl, prev: to.Previous, out: to.Sums}
	if to.Upper != "" && to.Upper != to.Root {
		c.upper = to.Upper
	}
	defer c.closeLayers()
	c.openPrevious()
	defer c.closePrevious()
	for _, it := range items {
		// One item at a time: two items may write the same path (the later
		// wins), so the files of one are all written before the next starts.
		if !o.Serial {
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(workers())
			c.files, c.filesCtx = g, gctx
		}
		err := c.copyItem(ctx, it, dest, destDir)
		if c.files != nil {
			if err == nil {
				c.flushFiles()
			}
			c.batch, c.batchBytes = nil, 0
			if werr := c.files.Wait(); err == nil {
				err = werr
			}
		}
		if err != nil {
			return nil, err
		}
	}
	// Directories this copy created get their source's modification time
	// once everything below them is written (writing a child changes its
	// parent's mtime), deepest first, as BuildKit does.
	for i := len(c.dirTimes) - 1; i >= 0; i-- {
		if err := lutimes(c.dirTimes[i].dst, c.dirTimes[i].fi); err != nil {
			return nil, err
		}
	}
	if len(c.deferred) == 0 {
		return nil, nil
	}
	return c.finishLinks, nil
}

func parentOwner(o Options) Owner {
	if o.Owner != nil {
		return *o.Owner
	}
	return Owner{}
}

func parentMode(o Options) os.FileMode {
	if o.Chmod != nil {
		return o.Chmod.Apply(os.ModeDir|0o755) &^ os.ModeDir
	}
	return 0o755
}

// workers bounds the regular files copied at once. Copying is mostly kernel
// time (copy_file_range, inode allocation) and waiting on the disk, so a few
// more than the CPUs keep both busy; the result does not depend on it.
func workers() int { return max(runtime.NumCPU(), 4) }

// copier is one Copy.
type copier struct {
	rootfs      string
	src         *Source // the source of the item being copied
	o           Options
	links       map[[2]uint64]string // source (dev, ino) -> host path written, for hardlinks
	parentOwner Owner
	parentMode  os.FileMode
	exclude     *buildctx.Filter // --exclude

	// files copies regular files' data in parallel (nil: inline); the walk
	// itself (directories, links, hardlinked files) stays on one goroutine,
	// so every path is written by exactly one writer.
	files      *errgroup.Group
	filesCtx   context.Context
	batch      []func() error // file copies not yet handed to files (goFile)
	batchBytes int64
	dirTimes   []dirTime // directories to stamp once everything below is written
	bufs       sync.Pool // *[]byte buffers of hashing copies

	layerLinks // hardlinks from source layers

	// lastDir is the last parent directory hostPath resolved
	lastDir struct {
		dir, host string
		ok        bool
	}

	prev    *Previous // see Target.Previous
	prevFD  int       // prev.Dir opened (O_PATH), or -1
	prevDev uint64    // its device
	out     *FileSums // see Target.Sums
}

type dirTime struct {
	dst string
	fi  os.FileInfo
}

// copyItem copies one item (a file, or a directory's contents) to dest;
// regular files may still be in flight in c.files when it returns.
func (c *copier) copyItem(ctx context.Context, it Item, dest string, destDir bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.src = it.Source
	host, fi, ok, err := follow(it)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: %q is a dangling symlink", c.src.Name, it.Rel)
	}
	// --exclude applies below a directory source, as in BuildKit; a file
	// source (named, or matched by a wildcard) is copied whatever its name:
	// BuildKit v0.34.2 does so, although Docker's reference suggests
	// otherwise (COPY --exclude=*.txt hom* copies home.txt there).
	excl := buildctx.NewTree(host, c.exclude)
	contents := func(target string) error {
		if err := c.mkdirAll(target); err != nil {
			return err
		}
		return walkBelow(ctx, c.src, host, it.Rel, excl, func(e Entry) error {
			return c.copyEntry(e.Host, e.Info, path.Join(target, e.Rel))
		})
	}
	if c.o.Parents {
		target := path.Join(dest, it.Keep)
		if fi.IsDir() {
			return contents(target)
		}
		if err := c.mkdirAll(path.Dir(target)); err != nil {
			return err
		}
		return c.copyEntry(host, fi, target)
	}
	switch {
	case fi.IsDir():
		return contents(dest)
	case c.o.Unpack && !it.NoUnpack && isArchiveFile(host):
		if err := c.mkdirAll(dest); err != nil {
			return err
		}
		c.lastDir.ok = false // an archive may replace anything below dest
		return c.unpack(ctx, host, dest)
	default:
		target := dest
		if destDir {
			target = path.Join(dest, path.Base(it.Rel))
		} else if dfi, err := statIn(c.rootfs, dest); err == nil && dfi.IsDir() {
			target = path.Join(dest, path.Base(it.Rel))
		}
		if err := c.mkdirAll(path.Dir(target)); err != nil {
			return err
		}
		return c.copyEntry(host, fi, target)
	}
}

// statIn stats p inside rootfs, following symlinks within it.
func statIn(rootfs, p string) (os.FileInfo, error) {
	h, err := securejoin.SecureJoin(rootfs, p)
	if err != nil {
		return nil, err
	}
	return os.Stat(h)
}

// MkdirAll creates dir (absolute, in the tree root) and its missing
// parents with owner and mode, as a copy creates the parents of its
// destination (and WORKDIR its directory); existing directories are left as
// they are, symlinks on the way are followed within root, and a dangling
// symlink in the way is replaced by the directory.
func MkdirAll(root, dir string, owner Owner, mode os.FileMode) error {
	c := &copier{rootfs: root, parentOwner: owner, parentMode: mode}
	return c.mkdirAll(dir)
}

// mkdirAll creates dir (absolute, in the image) and its missing parents with
// the parent mode and owner; existing directories are left as they are.
func (c *copier) mkdirAll(dir string) error {
	dir = path.Clean(dir)
	if dir == "/" {
		return nil
	}
	cur := "/"
	for _, part := range strings.Split(strings.TrimPrefix(dir, "/"), "/") {
		cur = path.Join(cur, part)
		h, err := securejoin.SecureJoin(c.rootfs, cur)
		if err != nil {
			return err
		}
		fi, err := os.Stat(h)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("cannot copy to %s: %s is not a directory", dir, cur)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// A dangling symlink in the way is replaced by the directory.
		if lfi, lerr := os.Lstat(h); lerr == nil && lfi.Mode()&os.ModeSymlink != 0 {
			c.lastDir.ok = false
			os.Remove(h)
		}
		if err := os.Mkdir(h, 0o700); errors.Is(err, fs.ErrNotExist) {
			// cur went through a symlink (like /out -> /a/b/c) whose target's
			// parents do not exist yet: make them inside the rootfs first.
			rel, rerr := filepath.Rel(c.rootfs, filepath.Dir(h))
			if rerr != nil || strings.HasPrefix(rel, "..") {
				return fmt.Errorf("create %s: %w", cur, err)
			}
			if err := c.mkdirAll("/" + filepath.ToSlash(rel)); err != nil {
				return err
			}
			err = os.Mkdir(h, 0o700)
			if err != nil {
				return fmt.Errorf("create %s: %w", cur, err)
			}
		} else if err != nil {
			return fmt.Errorf("create %s: %w", cur, err)
		}
		if err := os.Lchown(h, c.parentOwner.UID, c.parentOwner.GID); err != nil {
			return err
		}
		if err := os.Chmod(h, c.parentMode); err != nil {
			return err
		}
	}
	return nil
}

// hostPath resolves p (absolute, in the image) for writing: parents are
// resolved inside the rootfs, the last component is not followed.
// The last parent resolved is remembered (entries of one directory come
// one after another) until the copy replaces or removes anything, which
// could change what a path resolves to.
func (c *copier) hostPath(p string) (string, error) {
	dir := path.Dir(p)
	if c.lastDir.ok && c.lastDir.dir == dir {
		return filepath.Join(c.lastDir.host, path.Base(p)), nil
	}
	parent, err := securejoin.SecureJoin(c.rootfs, dir)
	if err != nil {
		return "", err
	}
	c.lastDir.dir, c.lastDir.host, c.lastDir.ok = dir, parent, true
	return filepath.Join(parent, path.Base(p)), nil
}
