package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	mode "github.com/tonistiigi/dchapes-mode"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/plan"
	"github.com/strata-build/strata/internal/progress"
)

// copySource is where COPY/ADD read from: the build context (ignore rules
// apply, owners become root) or another stage's or image's filesystem
// (owners are kept).
type copySource struct {
	root      string
	ignore    *buildctx.Context // non-nil for the build context
	keepOwner bool
	name      string // for messages: "build context", "stage builder", "image busybox"
	// key identifies the content of a stage or image source for the cache;
	// "" means the files are hashed.
	key string
	// layers, bottom first, are the directories root shows (root is one of
	// them or an overlay of them) when they are immutable: unpacked store
	// layers, or a private extraction. A regular file found in one of them
	// may be hardlinked into a new snapshot instead of copied.
	layers []string
}

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

// hasMeta reports whether p uses wildcard characters.
func hasMeta(p string) bool { return strings.ContainsAny(p, "*?[") }

// resolve expands the source patterns of a COPY/ADD into items.
func (cs *copySource) resolve(patterns []string, parents bool) ([]copyItem, error) {
	var items []copyItem
	var missing []string
	for _, p := range patterns {
		pivot := "/"
		if parents {
			// "a/./b/c" keeps "b/c"; without a pivot the whole path is kept.
			if before, _, ok := strings.Cut(p, "/./"); ok {
				pivot = path.Clean("/" + before)
			}
		}
		clean := path.Clean("/" + filepath.ToSlash(p))
		var rels []string
		if hasMeta(clean) {
			m, err := cs.glob(clean)
			if err != nil {
				return nil, err
			}
			rels = m
			if len(m) == 0 {
				missing = append(missing, p)
				continue
			}
		} else {
			rels = []string{clean}
		}
		for _, rel := range rels {
			it, err := cs.stat(rel)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: %q not found%s", cs.where(), strings.TrimPrefix(p, "./"), cs.notFoundHint(rel))
			}
			if err != nil {
				return nil, err
			}
			if parents {
				k, err := filepath.Rel(pivot, rel)
				if err != nil {
					return nil, err
				}
				it.keep = filepath.ToSlash(k)
			}
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s: no source files were specified: nothing matches %s", cs.where(), strings.Join(quoteAll(missing), ", "))
		}
		return nil, errors.New("no source files were specified")
	}
	return items, nil
}

// notFoundHint explains a missing source: excluded by an ignore rule (with
// its line), or a similar name that does exist.
func (cs *copySource) notFoundHint(rel string) string {
	if cs.ignore != nil {
		if _, err := os.Lstat(filepath.Join(cs.root, rel)); err == nil {
			if line, pat, ok := cs.ignore.ExcludedBy(strings.TrimPrefix(rel, "/")); ok {
				return fmt.Sprintf("; it is excluded by %s line %d (%q)", filepath.Base(cs.ignore.IgnoreFile), line, pat)
			}
		}
	}
	dir, base := path.Split(rel)
	host, err := securejoin.SecureJoin(cs.root, dir)
	if err != nil {
		return ""
	}
	ents, err := os.ReadDir(host)
	if err != nil {
		return ""
	}
	best, bestD := "", 3
	for _, e := range ents {
		if cs.excluded(path.Join(dir, e.Name())) {
			continue
		}
		if d := plan.Distance(strings.ToLower(base), strings.ToLower(e.Name())); d < bestD && d < len(base) {
			best, bestD = e.Name(), d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", strings.TrimPrefix(path.Join(dir, best), "/"))
}

func (cs *copySource) where() string {
	if cs.ignore != nil {
		return "COPY source not found in build context"
	}
	return "COPY source not found in " + cs.name
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strconv.Quote(v)
	}
	return out
}

// stat finds rel in the source, following top-level symlinks inside the root.
func (cs *copySource) stat(rel string) (copyItem, error) {
	if cs.excluded(rel) {
		return copyItem{}, fs.ErrNotExist
	}
	host, err := securejoin.SecureJoin(cs.root, rel)
	if err != nil {
		return copyItem{}, err
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return copyItem{}, err
	}
	if cs.ignore != nil {
		if r, err := filepath.Rel(cs.root, host); err == nil && cs.excluded("/"+filepath.ToSlash(r)) {
			return copyItem{}, fs.ErrNotExist
		}
	}
	return copyItem{rel: rel, host: host, fi: fi}, nil
}

// excluded reports whether rel is missing from the build context as
// BuildKit transfers it with the .dockerignore rules (buildctx.Context.Excluded):
// every walk of the context skips it, and a directory that the rules exclude
// is still copied (with its own metadata) when something below it is kept.
func (cs *copySource) excluded(rel string) bool {
	return cs.ignore != nil && cs.ignore.Excluded(strings.TrimPrefix(rel, "/"))
}

// glob matches a cleaned absolute pattern component by component.
func (cs *copySource) glob(pattern string) ([]string, error) {
	parts := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	cur := []string{"/"}
	for i, part := range parts {
		var next []string
		if part == "**" {
			// zero or more directories
			seen := map[string]bool{}
			for _, dir := range cur {
				for _, d := range cs.dirsBelow(dir) {
					if !seen[d] {
						seen[d] = true
						next = append(next, d)
					}
				}
			}
			cur = next
			continue
		}
		for _, dir := range cur {
			if !hasMeta(part) {
				next = append(next, path.Join(dir, part))
				continue
			}
			host, err := securejoin.SecureJoin(cs.root, dir)
			if err != nil {
				continue
			}
			ents, err := os.ReadDir(host)
			if err != nil {
				continue
			}
			for _, e := range ents {
				ok, err := path.Match(part, e.Name())
				if err != nil {
					return nil, fmt.Errorf("bad pattern %q: %w", pattern, err)
				}
				if ok {
					p := path.Join(dir, e.Name())
					if !cs.excluded(p) {
						next = append(next, p)
					}
				}
			}
		}
		if i < len(parts)-1 {
			// keep only what exists, for the next level
			var ex []string
			for _, n := range next {
				if h, err := securejoin.SecureJoin(cs.root, n); err == nil {
					if _, err := os.Stat(h); err == nil {
						ex = append(ex, n)
					}
				}
			}
			next = ex
		}
		cur = next
	}
	var out []string
	for _, c := range cur {
		if h, err := securejoin.SecureJoin(cs.root, c); err == nil {
			if _, err := os.Lstat(h); err == nil {
				out = append(out, c)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// dirsBelow lists dir and every directory below it (not following
// symlinks), skipping excluded ones: the matches of "**".
func (cs *copySource) dirsBelow(dir string) []string {
	out := []string{dir}
	host, err := securejoin.SecureJoin(cs.root, dir)
	if err != nil {
		return out
	}
	ents, err := os.ReadDir(host)
	if err != nil {
		return out
	}
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		if e.IsDir() && !cs.excluded(p) {
			out = append(out, cs.dirsBelow(p)...)
		}
	}
	return out
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
	layers := c.cs.layers
	if len(layers) == 0 || c.noLinks {
		return false
	}
	rel, ok := strings.CutPrefix(srcHost, c.cs.root)
	rel = strings.TrimPrefix(rel, "/")
	if !ok || rel == "" {
		return false
	}
	if c.rootDev == 0 {
		var rs unix.Stat_t
		on := c.rootfs
		if c.upper != "" {
			on = c.upper
		}
		if err := unix.Stat(on, &rs); err != nil {
			c.noLinks = true
			return false
		}
		c.rootDev = rs.Dev
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
		if c.linked[key] {
			return false
		}
		if c.upper != "" {
			if !c.placeholder(dst, fi, st, deferredLink{layer: layers[i], rel: rel, dev: ls.Dev, ino: ls.Ino, size: ls.Size}) {
				return false
			}
		} else if err := unix.Linkat(fd, "", unix.AT_FDCWD, dst, unix.AT_EMPTY_PATH); err != nil {
			return false // EXDEV, EMLINK, ...: copy instead
		}
		if c.linked == nil {
			c.linked = map[[2]uint64]bool{}
		}
		c.linked[key] = true
		return true
	}
	return false
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

// placeholder creates dst empty through the overlay with the metadata of
// the source file (fi, st) and records the link d to make over it; on any
// failure dst is removed again and the caller copies the file.
func (c *copier) placeholder(dst string, fi os.FileInfo, st *syscall.Stat_t, d deferredLink) bool {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false
	}
	f.Close()
	if err := applyMeta(dst, int(st.Uid), int(st.Gid), fi.Mode(), fi, true); err != nil {
		os.Remove(dst)
		return false
	}
	if c.deferred == nil {
		c.deferred = map[string]deferredLink{}
	}
	c.deferred[c.upperRel(dst)] = d
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

func applyMeta(dst string, uid, gid int, mode os.FileMode, fi os.FileInfo, times bool) error {
	if err := os.Lchown(dst, uid, gid); err != nil {
		return err
	}
	if err := os.Chmod(dst, mode&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
		return err
	}
	if times {
		return lutimes(dst, fi)
	}
	return nil
}

func lutimes(p string, fi os.FileInfo) error {
	ts := []unix.Timespec{unix.NsecToTimespec(fi.ModTime().UnixNano()), unix.NsecToTimespec(fi.ModTime().UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// copyData writes the regular file srcHost (fi: its stat data) to dst,
// recording its checksum when the copy hashes build-context files.
func (c *copier) copyData(srcHost string, fi os.FileInfo, dst string) error {
	if c.o.sums != nil && c.cs.ignore != nil {
		bp, ok := c.bufs.Get().(*[]byte)
		if !ok {
			b := make([]byte, 256<<10)
			bp = &b
		}
		defer c.bufs.Put(bp)
		return copyFile(srcHost, dst, fi, c.o.sums, *bp)
	}
	return copyFileData(srcHost, dst)
}

// copyFileData copies the regular file src to a new file dst.
func copyFileData(src, dst string) error { return copyFile(src, dst, nil, nil, nil) }

// copyFile copies the regular file src to a new file dst. Without sums it
// uses File.ReadFrom, not io.Copy: io.Copy prefers src's WriteTo, which for
// a file destination falls back to a read/write loop through a user-space
// buffer, where ReadFrom tries copy_file_range first (an in-kernel copy, or
// a reflink on filesystems that share extents). With sums it copies through
// buf, hashing what it reads, and records the sha256 when src did not
// change while it was read (fi: its stat data before): the build context is
// then read once for both the copy and the step's cache key.
func copyFile(src, dst string, fi os.FileInfo, sums *buildctx.Sums, buf []byte) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	var h hash.Hash
	if sums == nil || isSparse(in) {
		sums = nil // a sparse file's holes are not read, so not hashed
		err = copyData(out, in, buf)
	} else {
		h = sha256.New()
		_, err = io.CopyBuffer(io.MultiWriter(out, h), struct{ io.Reader }{in}, buf)
	}
	if err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if sums != nil {
		if after, err := in.Stat(); err == nil {
			sums.Record(src, fi, after, hex.EncodeToString(h.Sum(nil)))
		}
	}
	return nil
}

// isSparse reports whether f takes less disk than its size (has holes).
func isSparse(f *os.File) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Blocks*512 < st.Size
}

// copyData copies the content of in into the empty file out. A sparse file
// is copied extent by extent (SEEK_DATA/SEEK_HOLE), its holes left holes, so
// copying it costs what it holds, not its size; copy_file_range (what
// File.ReadFrom tries first) would write its holes out as zeros on
// filesystems that cannot share extents. Other files go through ReadFrom.
func copyData(out, in *os.File, buf []byte) error {
	if !isSparse(in) {
		_, err := out.ReadFrom(in)
		return err
	}
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if buf == nil {
		buf = make([]byte, 256<<10)
	}
	fd := int(in.Fd())
	size := fi.Size()
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		end = min(end, size)
		if _, err := io.CopyBuffer(io.NewOffsetWriter(out, start), io.NewSectionReader(in, start, end-start), buf); err != nil {
			return err
		}
		off = end
	}
	return out.Truncate(size)
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

// parseChmod parses a --chmod value: octal, or symbolic as chmod(1) takes it.
func parseChmod(s string) (*chmodSpec, error) {
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		var ne *strconv.NumError
		set, serr := mode.Parse(s)
		if serr != nil {
			if errors.As(serr, &ne) || isDigits(s) {
				return nil, fmt.Errorf("invalid chmod parameter: '%s'. it should be octal string and between 0 and 07777", s)
			}
			return nil, fmt.Errorf("invalid chmod parameter %q: %w", s, serr)
		}
		return &chmodSpec{sym: &set}, nil
	}
	if v > 0o7777 {
		return nil, fmt.Errorf("invalid chmod parameter: '%s'. it should be octal string and between 0 and 07777", s)
	}
	m := os.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return &chmodSpec{octal: &m}, nil
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// copy runs COPY.
func (sb *stageBuilder) copy(ctx context.Context, c *instructions.CopyCommand, p *progress.Step) error {
	// --link only changes how BuildKit rebases the layer; the files are the same.
	from := c.From
	if from != "" {
		v, _, err := sb.r.df.Lexer().ProcessWord(from, sb.env.getter())
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		from = v
	}
	return sb.copyLike(ctx, p, "COPY", from, c.Chown, c.Chmod, c.SourcesAndDest, copyOptions{parents: c.Parents, exclude: c.ExcludePatterns, link: c.Link}, nil)
}

// add runs ADD: local files and archives (extracted), http(s) URLs and git
// repositories.
func (sb *stageBuilder) add(ctx context.Context, c *instructions.AddCommand, p *progress.Step) error {
	unpack := c.Unpack == nil || *c.Unpack
	o := copyOptions{unpack: unpack, exclude: c.ExcludePatterns, link: c.Link, bound: sb.r.b.applyOptions()}
	var local []string
	var remote []string
	for _, s := range c.SourcePaths {
		if _, isGit, err := gitSource(s); err != nil {
			return err
		} else if isGit || isHTTPSource(s) {
			remote = append(remote, s)
			continue
		}
		local = append(local, s)
	}
	if c.Checksum != "" && (len(remote) != 1 || len(c.SourcePaths) != 1) {
		if len(c.SourcePaths) != 1 {
			return fmt.Errorf("checksum can't be specified for multiple sources")
		}
		return fmt.Errorf("checksum requires HTTP(S) or Git sources")
	}
	if c.KeepGitDir != nil && *c.KeepGitDir && len(remote) == 0 {
		return fmt.Errorf("--keep-git-dir is only valid with a git source")
	}
	if len(remote) == 0 {
		return sb.copyLike(ctx, p, "ADD", "", c.Chown, c.Chmod, c.SourcesAndDest, o, nil)
	}
	tmp, err := os.MkdirTemp(sb.r.b.Session.Dir, "add-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var extra []copyItem
	for _, s := range remote {
		if ref, isGit, _ := gitSource(s); isGit {
			sum := c.Checksum
			if sum != "" {
				if ref.Checksum != "" && ref.Checksum != sum {
					return fmt.Errorf("checksum mismatch %q != %q", sum, ref.Checksum)
				}
				ref.Checksum = sum
			}
			keep := c.KeepGitDir != nil && *c.KeepGitDir
			if ref.KeepGitDir != nil {
				keep = *ref.KeepGitDir
			}
			p.Write([]byte("git clone " + ref.Remote + "\n"))
			it, err := fetchGit(ctx, ref, tmp, keep)
			if err != nil {
				return err
			}
			extra = append(extra, it)
			continue
		}
		p.Write([]byte("download " + s + "\n"))
		it, err := fetchHTTP(ctx, s, tmp, c.Checksum, sb.r.b.httpOptions())
		if err != nil {
			return err
		}
		// Remote files are extracted only with an explicit --unpack=true.
		if c.Unpack == nil || !*c.Unpack {
			it.noUnpack = true
		}
		extra = append(extra, it)
	}
	sd := c.SourcesAndDest
	sd.SourcePaths = local
	return sb.copyLike(ctx, p, "ADD", "", c.Chown, c.Chmod, sd, o, extra)
}

func (sb *stageBuilder) copyLike(ctx context.Context, p *progress.Step, verb, from, chown, chmod string, sd instructions.SourcesAndDest, o copyOptions, extra []copyItem) error {
	cm, err := parseChmod(chmod)
	if err != nil {
		return err
	}
	o.chmod = cm
	if o.link && chownByName(chown) {
		// as BuildKit: a linked layer is made without the stage below it
		return fmt.Errorf("--chown=%s: user and group names can't be resolved when used with --link, use numeric uid[:gid] instead", chown)
	}
	dest := sd.DestPath
	trailing := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	dest = sb.resolvePath(dest)
	if trailing && !strings.HasSuffix(dest, "/") {
		dest += "/"
	}
	createdBy := verb
	if o.parents {
		createdBy += " --parents"
	}
	if chown != "" {
		createdBy += " --chown=" + chown
	}
	if chmod != "" {
		createdBy += " --chmod=" + chmod
	}
	for _, it := range extra {
		createdBy += " " + it.src.name
	}
	for _, s := range sd.SourcePaths {
		createdBy += " " + s
	}
	for _, s := range sd.SourceContents {
		createdBy += " <<" + s.Path
	}
	createdBy += " " + sd.DestPath + " # buildkit"

	if from != "" && len(extra) == 0 && len(sd.SourceContents) == 0 && !o.link && !sb.r.plan.IsNamed(from) {
		req := copyRequest{verb: verb, chown: chown, chmod: chmod, sources: sd.SourcePaths, dest: dest, o: o, createdBy: createdBy}
		idx, isStage, err := sb.r.plan.ResolveFrom(sb.r.df, sb.st.Index, from)
		if err != nil {
			return err
		}
		if !isStage {
			return sb.copyFromImage(ctx, p, from, req)
		}
		// A stage that did not change gives the same files: try the cheap key
		// (the stage's key and the patterns) before reading any content.
		if res := sb.r.results[idx]; res != nil {
			in := append(req.optionInputs(), cache.Input{Name: "from", Value: "stage " + string(res.key)})
			for _, pat := range sd.SourcePaths {
				in = append(in, cache.Input{Name: "source " + pat})
			}
			if sb.tryAlias(ctx, p, createdBy, in) {
				return nil
			}
		}
	}
	return sb.withSource(ctx, from, func(cs *copySource) error {
		items := append([]copyItem(nil), extra...)
		if len(sd.SourcePaths) > 0 {
			var err error
			local, err := cs.resolve(sd.SourcePaths, o.parents)
			if err != nil {
				return err
			}
			items = append(items, local...)
		}
		// Heredoc sources become files in a private temp dir.
		var tmp string
		if len(sd.SourceContents) > 0 {
			var err error
			tmp, err = os.MkdirTemp(sb.r.b.Session.Dir, "heredoc-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			for _, sc := range sd.SourceContents {
				h := filepath.Join(tmp, filepath.Base(sc.Path))
				if err := os.WriteFile(h, []byte(sc.Data), 0o644); err != nil {
					return err
				}
				if err := os.Chmod(h, 0o644); err != nil {
					return err
				}
				fi, err := os.Lstat(h)
				if err != nil {
					return err
				}
				items = append(items, copyItem{rel: "/" + filepath.Base(sc.Path), host: h, fi: fi, src: &copySource{root: tmp, name: "heredoc"}})
			}
		}
		// A COPY from the build context with no record for its prefix (its
		// key without the files' content) cannot hit the cache, so it does
		// not hash the files before copying them: the copy hashes what it
		// reads, the key is made and looked up afterwards (then from the stat
		// cache, without reading the files again). One read of the context
		// instead of two, and no hashing pass before the copy starts.
		keyInputs := func() ([]cache.Input, error) {
			in, err := sb.copyInputs(ctx, verb, cs, from, items, dest, chown, chmod, o)
			if err == nil && o.link {
				in = append(in, cache.Input{Name: "link", Value: "true"})
			}
			return in, err
		}
		var inputs []cache.Input
		var late func() ([]cache.Input, error)
		prefix, speculate := sb.copyPrefix(cs, from, items, copyRequest{verb: verb, dest: dest, chown: chown, chmod: chmod, o: o})
		if speculate {
			if sb.r.opts.DebugCache {
				sb.r.opts.Progress.Logf("cache [%s %d/%d]: no record can match, hashing the files while copying them", sb.st.Display(), sb.step, sb.total)
			}
			o.sums = sb.r.sums
			late = keyInputs
		} else {
			var err error
			if inputs, err = keyInputs(); err != nil {
				return err
			}
		}
		marked := func(err error) error {
			if err == nil && prefix != "" {
				sb.r.cache.MarkPrefix(prefix)
			}
			return err
		}
		if !o.link {
			return marked(sb.changeKeyed(ctx, p, createdBy, false, func(rootfs, upper string) (func() error, error) {
				if chown != "" {
					ow, err := resolveChown(rootfs, chown)
					if err != nil {
						return nil, err
					}
					o.chown = &ow
				}
				return copyIntoSnapshot(ctx, rootfs, upper, items, dest, cs, o)
			}, inputs, late))
		}
		// --link: the files go into an empty layer, so nothing of the stage
		// (like a symlink on the destination path) changes where they land;
		// --chown is numeric (checked above), so no /etc/passwd is read.
		if chown != "" {
			ow, err := resolveChown("", chown)
			if err != nil {
				return err
			}
			o.chown = &ow
		}
		return marked(sb.changeKeyed(ctx, p, createdBy, true, func(rootfs, upper string) (func() error, error) {
			return copyIntoSnapshot(ctx, rootfs, upper, items, dest, cs, o)
		}, inputs, late))
	})
}

// copyPrefix returns the key prefix of a COPY from the build context: the
// step's key without the content of its sources (Index.MarkPrefix), and
// whether the copy may run before its key is known: the cache cannot hold
// a record for it (no mark for the prefix, no --cache-from to ask, or
// --no-cache). Other copies have no prefix.
func (sb *stageBuilder) copyPrefix(cs *copySource, from string, items []copyItem, req copyRequest) (cache.Key, bool) {
	if from != "" || cs.ignore == nil || sb.r.sums == nil {
		return "", false
	}
	in := append(sb.commonInputs(), req.optionInputs()...)
	in = append(in, cache.Input{Name: "prefix", Value: "copy from the build context"})
	for _, it := range items {
		in = append(in, cache.Input{Name: "source " + it.rel, Value: it.keep})
	}
	prefix := cache.NewKey(sb.state.key, in...)
	if !sb.useCache() {
		return prefix, true
	}
	return prefix, len(sb.r.opts.CacheFrom) == 0 && !sb.r.cache.HasPrefix(prefix)
}

// withSource gives fn the source of a COPY: the build context, or the
// filesystem of the stage or image named by from.
func (sb *stageBuilder) withSource(ctx context.Context, from string, fn func(cs *copySource) error) error {
	r := sb.r
	if from == "" {
		return fn(&copySource{root: r.bctx.Dir, ignore: r.bctx, name: "build context"})
	}
	if r.plan.IsNamed(from) {
		nc, err := r.resolveNamed(ctx, from)
		if err != nil {
			return err
		}
		if nc.img == nil {
			return fn(&copySource{root: nc.dir, name: "build context " + from})
		}
		dirs, err := r.b.LayerDirs(ctx, nc.img)
		if err != nil {
			return err
		}
		return r.b.view(ctx, dirs, func(root string) error {
			return fn(&copySource{root: root, keepOwner: true, name: "build context " + from, key: "image " + nc.img.Descriptor.Digest.String(), layers: dirs})
		})
	}
	idx, isStage, err := r.plan.ResolveFrom(r.df, sb.st.Index, from)
	if err != nil {
		return err
	}
	if isStage {
		res := r.results[idx]
		if res == nil {
			return fmt.Errorf("stage %s was not built", from)
		}
		dirs, err := r.ensureDirs(ctx, res)
		if err != nil {
			return err
		}
		return r.b.view(ctx, dirs, func(root string) error {
			return fn(&copySource{root: root, keepOwner: true, name: "stage " + r.plan.All[idx].Display(), layers: dirs})
		})
	}
	img, err := r.b.ResolveImage(ctx, from, r.opts.Pull, r.opts.Platform, r.opts.Progress)
	if err != nil {
		hint := r.plan.Suggest(from)
		if hint != "" {
			return fmt.Errorf("--from=%s: no earlier stage has that name%s; as an image: %w", from, hint, err)
		}
		return fmt.Errorf("--from=%s: not a stage name, and pulling it as an image failed: %w", from, err)
	}
	dirs, err := r.b.LayerDirs(ctx, img)
	if err != nil {
		return err
	}
	return r.b.view(ctx, dirs, func(root string) error {
		return fn(&copySource{root: root, keepOwner: true, name: "image " + from, key: "image " + img.Descriptor.Digest.String(), layers: dirs})
	})
}

// mustFilter compiles --exclude patterns validated by copyIntoSnapshot.
func mustFilter(patterns []string) *buildctx.Filter {
	f, err := buildctx.NewFilter(patterns)
	if err != nil {
		return nil
	}
	return f
}
