package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	mode "github.com/tonistiigi/dchapes-mode"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/layer"
)

// copyOptions are the flags of one COPY/ADD.
type copyOptions struct {
	chown   *owner
	chmod   *chmodSpec
	unpack  bool               // ADD: extract local archives
	parents bool               // COPY --parents: keep the source path below its pivot
	link    bool               // COPY --link: write into an empty layer, independent of the stage's files
	exclude []string           // COPY/ADD --exclude patterns
	bound   layer.ApplyOptions // ADD: what one extracted archive may hold

	// sums, when set, gets the checksum of every build-context file the
	// copy reads, computed on the same read (see copyLike's speculative
	// path); not part of the step's key.
	sums *buildctx.Sums
}

// chmodSpec is a --chmod value: octal (replaces the permission bits) or
// symbolic like chmod(1) (u+x, a=rX, ...; applied to each file's own mode).
type chmodSpec struct {
	octal *os.FileMode
	sym   *mode.Set
}

// apply returns the mode a file of mode m gets.
func (c *chmodSpec) apply(m os.FileMode) os.FileMode {
	if c == nil {
		return m
	}
	if c.octal != nil {
		return m&os.ModeType | *c.octal
	}
	return m&os.ModeType | c.sym.Apply(m)&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)
}

// copyItem is one resolved source: its host path and what to call it.
type copyItem struct {
	rel  string // path in the source, cleaned, with leading "/"
	host string // host path, symlinks of the top level followed
	fi   os.FileInfo
	keep string      // with --parents: the path kept below the destination
	src  *copySource // where the item comes from when not the instruction's source (URL, git, heredoc)
	// noUnpack keeps an archive as a file (ADD of a URL without --unpack).
	noUnpack bool
}

// copyInto copies items into rootfs at dest (absolute, in the image; a
// trailing slash means a directory), as Docker's COPY does.
func copyInto(ctx context.Context, rootfs string, items []copyItem, dest string, cs *copySource, o copyOptions) error {
	_, err := copyIntoSnapshot(ctx, rootfs, "", items, dest, cs, o)
	return err
}

// copyIntoSnapshot is copyInto for a snapshot whose upper directory is
// upper ("" when unknown). When rootfs is an overlay mount of that upper
// directory, files that can be hardlinked from the source's layers are
// created empty through the mount (so overlayfs resolves their paths and
// copies up their parents) and linked in place by the returned finish,
// which must run once the overlay is unmounted: the upper directory of a
// mounted overlay must not be changed underneath it.
func copyIntoSnapshot(ctx context.Context, rootfs, upper string, items []copyItem, dest string, cs *copySource, o copyOptions) (finish func() error, err error) {
	destDir := strings.HasSuffix(dest, "/") || strings.HasSuffix(dest, "/.") || dest == "."
	dest = path.Clean(dest)
	if dest == "/" {
		destDir = true
	}
	if len(items) > 1 && !destDir {
		if fi, err := statIn(rootfs, dest); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("when using COPY with more than one source file, the destination must be a directory and end with a /")
		}
	}
	parentOwner := owner{}
	if o.chown != nil {
		parentOwner = *o.chown
	}
	parentMode := os.FileMode(0o755)
	if o.chmod != nil {
		parentMode = o.chmod.apply(os.ModeDir|0o755) &^ os.ModeDir
	}
	excl, err := buildctx.NewFilter(o.exclude)
	if err != nil {
		return nil, fmt.Errorf("--exclude: %w", err)
	}
	c := &copier{rootfs: rootfs, cs: cs, o: o, links: map[[2]uint64]string{}, parentOwner: parentOwner, parentMode: parentMode, exclude: excl}
	if upper != "" && upper != rootfs {
		c.upper = upper
	}
	defer c.closeLayers()
	for _, it := range items {
		// One item at a time: two items may write the same path (the later
		// wins), so the files of one are all written before the next starts.
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(copyWorkers())
		c.files, c.filesCtx = g, gctx
		err := c.copyItem(ctx, it, cs, dest, destDir)
		if werr := g.Wait(); err == nil {
			err = werr
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

// copyWorkers bounds the regular files copied at once. Copying is mostly
// kernel time (copy_file_range, inode allocation) and waiting on the disk, so
// a few more than the CPUs keep both busy; the result does not depend on it.
func copyWorkers() int { return max(runtime.NumCPU(), 4) }

// copyItem copies one resolved source (a file, or a directory's contents)
// to dest; regular files may still be in flight in c.files when it returns.
func (c *copier) copyItem(ctx context.Context, it copyItem, cs *copySource, dest string, destDir bool) error {
	rootfs, o := c.rootfs, c.o
	if err := ctx.Err(); err != nil {
		return err
	}
	c.cs = cs
	if it.src != nil {
		c.cs = it.src
	}
	fi := it.fi
	host := it.host
	if fi.Mode()&os.ModeSymlink != 0 {
		// A symlink named as a source is followed, within the source root.
		real, err := securejoin.SecureJoin(c.cs.root, it.rel)
		if err != nil {
			return err
		}
		rfi, err := os.Stat(real)
		if err != nil {
			return fmt.Errorf("%s: %q is a dangling symlink", c.cs.where(), it.rel)
		}
		host, fi = real, rfi
	}
	// --exclude applies below a directory source, as in BuildKit; a file
	// source (named, or matched by a wildcard) is copied whatever its name:
	// BuildKit v0.34.2 does so, although Docker's reference suggests
	// otherwise (COPY --exclude=*.txt hom* copies home.txt there).
	c.excludeIn = buildctx.NewTree(host, c.exclude)
	if o.parents {
		target := path.Join(dest, it.keep)
		if fi.IsDir() {
			if err := c.mkdirAll(target); err != nil {
				return err
			}
			return c.copyDirContents(ctx, host, it.rel, target, "")
		}
		if err := c.mkdirAll(path.Dir(target)); err != nil {
			return err
		}
		return c.copyEntry(host, fi, target)
	}
	switch {
	case fi.IsDir():
		if err := c.mkdirAll(dest); err != nil {
			return err
		}
		return c.copyDirContents(ctx, host, it.rel, dest, "")
	case o.unpack && !it.noUnpack && isArchiveFile(host):
		if err := c.mkdirAll(dest); err != nil {
			return err
		}
		return c.unpack(ctx, host, dest)
	default:
		target := dest
		if destDir {
			target = path.Join(dest, path.Base(it.rel))
		} else if dfi, err := statIn(rootfs, dest); err == nil && dfi.IsDir() {
			target = path.Join(dest, path.Base(it.rel))
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

type copier struct {
	rootfs      string
	cs          *copySource
	o           copyOptions
	links       map[[2]uint64]string // source (dev, ino) -> host path written, for hardlinks
	parentOwner owner
	parentMode  os.FileMode
	exclude     *buildctx.Filter // --exclude
	excludeIn   *buildctx.Tree   // the copied directory seen through exclude

	// files copies regular files' data in parallel (nil: inline); the walk
	// itself (directories, links, hardlinked files) stays on one goroutine,
	// so every path is written by exactly one writer.
	files    *errgroup.Group
	filesCtx context.Context
	dirTimes []dirTime // directories to stamp once everything below is written

	rootDev uint64             // device of rootfs, for hardlinks from source layers
	noLinks bool               // hardlinks from source layers are impossible here
	layerFD map[string]int     // open O_PATH descriptors of source layer dirs
	linked  map[[2]uint64]bool // layer files this copy has hardlinked once already
	bufs    sync.Pool          // *[]byte buffers of hashing copies

	// upper is the upper directory of the overlay mounted at rootfs, when
	// known: layer files are then linked there after the unmount (deferred,
	// by path below upper), not through the mount.
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

type dirTime struct {
	dst string
	fi  os.FileInfo
}

// excluded reports whether --exclude leaves rel (relative to the copied
// directory) out: as in BuildKit, an excluded directory is still copied,
// with its own metadata, when something below it is kept.
func (c *copier) excluded(rel string) bool { return c.excludeIn.Excluded(rel) }

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
		if err := os.Lchown(h, c.parentOwner.uid, c.parentOwner.gid); err != nil {
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
func (c *copier) hostPath(p string) (string, error) {
	parent, err := securejoin.SecureJoin(c.rootfs, path.Dir(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(parent, path.Base(p)), nil
}

// copyDirContents copies the children of srcHost into the directory dest;
// under is the path below the copied source, for --exclude.
func (c *copier) copyDirContents(ctx context.Context, srcHost, srcRel, dest, under string) error {
	ents, err := os.ReadDir(srcHost)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		rel := path.Join(srcRel, e.Name())
		if c.excluded(path.Join(under, e.Name())) {
			continue
		}
		if c.cs.excluded(rel) {
			continue
		}
		h := filepath.Join(srcHost, e.Name())
		fi, err := os.Lstat(h)
		if err != nil {
			return err
		}
		target := path.Join(dest, e.Name())
		if err := c.copyEntry(h, fi, target); err != nil {
			return err
		}
		if fi.IsDir() {
			if err := c.copyDirContents(ctx, h, rel, target, path.Join(under, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyEntry writes one file, directory, symlink or special file at target.
func (c *copier) copyEntry(srcHost string, fi os.FileInfo, target string) error {
	dst, err := c.hostPath(target)
	if err != nil {
		return err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	uid, gid := 0, 0
	if c.cs.keepOwner && st != nil {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	if c.o.chown != nil {
		uid, gid = c.o.chown.uid, c.o.chown.gid
	}
	mode := fi.Mode()
	if c.o.chmod != nil && mode&os.ModeSymlink == 0 {
		mode = c.o.chmod.apply(mode)
	}
	if c.deferred != nil {
		delete(c.deferred, c.upperRel(dst)) // a later source wins
	}
	existing, lerr := os.Lstat(dst)
	if lerr == nil {
		if fi.IsDir() && existing.IsDir() {
			// Merge into the existing directory; it takes the source's metadata.
			return applyMeta(dst, uid, gid, mode, fi, false)
		}
		if existing.IsDir() {
			if err := os.RemoveAll(dst); err != nil {
				return err
			}
		} else if err := os.Remove(dst); err != nil {
			return err
		}
	}
	switch {
	case fi.IsDir():
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		if c.files != nil {
			c.dirTimes = append(c.dirTimes, dirTime{dst: dst, fi: fi})
			return applyMeta(dst, uid, gid, mode, fi, false)
		}
	case mode&os.ModeSymlink != 0:
		link, err := os.Readlink(srcHost)
		if err != nil {
			return err
		}
		if err := os.Symlink(link, dst); err != nil {
			return err
		}
		if err := os.Lchown(dst, uid, gid); err != nil {
			return err
		}
		return lutimes(dst, fi)
	case fi.Mode().IsRegular():
		if st != nil && st.Nlink > 1 {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if prev, ok := c.links[key]; ok {
				if err := os.Link(prev, dst); err == nil {
					return nil
				}
			}
			defer func() { c.links[key] = dst }()
		}
		if st != nil && uid == int(st.Uid) && gid == int(st.Gid) && mode == fi.Mode() && c.linkFromLayer(srcHost, fi, st, dst) {
			return nil
		}
		if c.files != nil && (st == nil || st.Nlink <= 1) {
			c.files.Go(func() error {
				if err := c.filesCtx.Err(); err != nil {
					return err
				}
				if err := c.copyData(srcHost, fi, dst); err != nil {
					return err
				}
				return applyMeta(dst, uid, gid, mode, fi, true)
			})
			return nil
		}
		if err := c.copyData(srcHost, fi, dst); err != nil {
			return err
		}
	default:
		if st == nil {
			return fmt.Errorf("cannot copy %s: unsupported file type", srcHost)
		}
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("copy %s: %w", srcHost, err)
		}
	}
	return applyMeta(dst, uid, gid, mode, fi, true)
}

func isArchiveFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, layer.ArchiveHeadSize)
	n, _ := io.ReadFull(f, head)
	return layer.IsArchive(head[:n])
}

// unpack extracts the archive at host into dest (ADD).
func (c *copier) unpack(ctx context.Context, host, dest string) error {
	d, err := securejoin.SecureJoin(c.rootfs, dest)
	if err != nil {
		return err
	}
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	defer f.Close()
	var o *layer.Owner
	if c.o.chown != nil {
		o = &layer.Owner{UID: c.o.chown.uid, GID: c.o.chown.gid}
	}
	if err := layer.Unpack(ctx, d, f, o, c.o.bound); err != nil {
		return fmt.Errorf("extract %s: %w", filepath.Base(host), err)
	}
	return nil
}
