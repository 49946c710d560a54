package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/strata-build/strata/internal/ctxio"
	"golang.org/x/sys/unix"
)

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// MaxEntries bounds the number of tar entries (0: no limit); exceeding it
	// is an error.
	MaxEntries int
	// MaxBytes bounds the sum of the sizes of the layer's files, holes of
	// sparse files included (0: no limit); exceeding it is an error, found
	// from the headers before the file that crosses it is written.
	MaxBytes int64
	// BoundHint says how to raise MaxBytes, for its error (see BoundError).
	BoundHint string
}

// Apply extracts a (possibly compressed) OCI layer tar stream r into the empty
// directory dir in overlayfs lowerdir form, so dir can be stacked as an
// overlay lowerdir, and returns the digest of the uncompressed tar stream (the
// diffID; the stream is read to its end).
//
// "P/.wh.NAME" becomes a character device 0/0 at P/NAME and "P/.wh..wh..opq"
// sets trusted.overlay.opaque=y on P (other ".wh..wh." names are ignored).
// Owners, modes (setuid/setgid/sticky included), mtimes, symlinks, hardlinks
// (to an earlier path of the same layer), devices, fifos and SCHILY.xattr
// records are restored; overlay.* and security.selinux xattrs from the tar are
// ignored. Missing parents are created 0755; an entry replaces whatever an
// earlier entry left at its path (directories onto directories merge).
//
// The stream is treated as hostile: absolute names and names escaping with
// ".." are rejected, parents are resolved inside dir (openat2
// RESOLVE_IN_ROOT, or securejoin), so a symlink from an earlier entry is
// never followed out of dir, and the last component is never followed.
// The root entry ("./") is ignored. Apply needs root.
func Apply(ctx context.Context, dir string, r io.Reader, opts ApplyOptions) (digest.Digest, error) {
	x := &extractor{layer: true, maxEntries: opts.MaxEntries, bytes: Counter{Max: opts.MaxBytes, Hint: opts.BoundHint}}
	d, err := x.run(ctx, dir, r)
	if err != nil {
		return "", fmt.Errorf("apply layer to %s: %w", dir, err)
	}
	return d, nil
}

// Owner is a numeric owner for Unpack.
type Owner struct{ UID, GID int }

// Unpack extracts a (gzip, zstd, bzip2 or plain) tar archive r into dest, an
// existing directory (typically inside a mounted rootfs), like Docker's ADD
// auto-extraction: entries are written as they are (no whiteout conversion),
// existing files are overwritten and existing directories merged, paths are
// confined to dest (a leading "/" is stripped, ".." escapes are rejected,
// symlinks resolve inside dest), and owners, modes and mtimes from the archive
// are kept. If owner != nil every entry is chowned to owner.UID/GID instead.
// As in BuildKit (moby/go-archive in a chroot of dest): an entry whose name
// cleans to "." ("", "./") is skipped, a directory entry named "/" gives dest
// itself its owner, mode and times, a later entry replaces an earlier one,
// and a hardlink entry's owner and mode go to the file it links.
// opts bound the archive as they bound a layer in Apply (a gzip or
// sparse-file bomb is refused before the file that crosses the bound is
// written).
func Unpack(ctx context.Context, dest string, r io.Reader, owner *Owner, opts ApplyOptions) error {
	x := &extractor{owner: owner, maxEntries: opts.MaxEntries, bytes: Counter{Max: opts.MaxBytes, Hint: opts.BoundHint}}
	if _, err := x.run(ctx, dest, r); err != nil {
		return fmt.Errorf("unpack archive into %s: %w", dest, err)
	}
	return nil
}

// ErrMissingLinkTarget is returned by ApplyFlat when a wanted hardlink points
// at a file the filter left out.
var ErrMissingLinkTarget = errors.New("hardlink target was not extracted")

// ApplyFlat applies one layer of an image onto dir in flattened form, for
// callers that need only some paths of an image: only entries for which
// want(path) is true are written (path is slash-separated, relative, e.g.
// "usr/local/go/bin/gofmt"); whiteouts remove the path from dir, and an
// opaque marker removes what lower layers put in the directory. Call it for
// each layer, bottom first. Parent directories of wanted entries should be
// wanted too, or they are created 0755 root.
func ApplyFlat(ctx context.Context, dir string, r io.Reader, want func(path string) bool) error {
	x := &extractor{layer: true, flat: true, want: want, written: map[string]bool{}, noDigest: true}
	if _, err := x.run(ctx, dir, r); err != nil {
		return err
	}
	return nil
}

// extractor is the tar extraction shared by Apply (layer true) and Unpack.
type extractor struct {
	// flat (ApplyFlat): whiteouts delete, entries are filtered by want, and
	// written records this layer's paths for opaque markers.
	flat    bool
	want    func(string) bool
	written map[string]bool
	// noDigest: the caller does not want the stream's digest (ApplyFlat:
	// the blob's digest is checked as it is read), so it is not computed
	noDigest bool
	// plain: the stream is a tar, never decompressed (ApplyIndexed)
	plain bool

	layer           bool
	owner           *Owner
	maxEntries      int
	bytes           Counter // file sizes so far, against the byte bound
	forceSecureJoin bool    // tests: exercise the openat2 fallback

	root     *root
	buf      []byte
	dirTimes map[string][]unix.Timespec // directory mtimes, set at the end
}

func (x *extractor) run(ctx context.Context, dir string, r io.Reader) (digest.Digest, error) {
	rt, err := openRoot(dir)
	if err != nil {
		return "", err
	}
	defer rt.close()
	if x.forceSecureJoin {
		rt.useOpenat2 = false
	}
	x.root = rt
	x.buf = make([]byte, 256<<10)
	x.dirTimes = make(map[string][]unix.Timespec)

	zr := io.NopCloser(r)
	if !x.plain {
		if zr, err = Decompress(r); err != nil {
			return "", err
		}
	}
	defer zr.Close()
	digester := digest.SHA256.Digester()
	var stream io.Reader = ctxio.Reader(ctx, zr)
	if !x.noDigest {
		stream = io.TeeReader(stream, digester.Hash())
	}
	tr := tar.NewReader(stream)
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read tar: %w", err)
		}
		if x.maxEntries > 0 && n > x.maxEntries {
			return "", fmt.Errorf("more than %d tar entries", x.maxEntries)
		}
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeGNUSparse || hdr.Typeflag == tar.TypeCont {
			if err := x.bytes.Add(hdr.Size); err != nil {
				return "", fmt.Errorf("entry %q: the files add up to %w", hdr.Name, err)
			}
		}
		if err := x.entry(hdr, tr); err != nil {
			return "", fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	// Hash the end-of-archive blocks and any padding too.
	if _, err := io.CopyBuffer(io.Discard, stream, x.buf); err != nil {
		return "", fmt.Errorf("read tar: %w", err)
	}
	if err := x.setDirTimes(); err != nil {
		return "", err
	}
	if x.noDigest {
		return "", nil
	}
	return digester.Digest(), nil
}

func (x *extractor) entry(hdr *tar.Header, tr io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if !x.layer {
		// ADD cleans names as BuildKit's extraction (moby/go-archive,
		// filepath.Clean, in a chroot of dest) does: "", "." and "./" are
		// skipped whatever their type; "/" (and "//", "/.") is dest itself.
		switch path.Clean(hdr.Name) {
		case ".":
			return nil
		case "/":
			return x.destEntry(hdr)
		}
	}
	rel, err := cleanEntryName(hdr.Name, !x.layer)
	if err != nil {
		return err
	}
	if rel == "." {
		return nil // the root itself: keep dir as it is
	}
	parent, base := splitRel(rel)
	if x.flat {
		if strings.HasPrefix(base, whiteoutPrefix) {
			return x.flatWhiteout(parent, base)
		}
		if !x.want(rel) {
			return nil
		}
		x.written[rel] = true
	}
	if x.layer && strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(parent, base)
	}
	pfd, err := x.root.mkdirAll(parent)
	if err != nil {
		return fmt.Errorf("parent directory: %w", err)
	}
	defer unix.Close(pfd)

	isDir := hdr.Typeflag == tar.TypeDir
	exists, err := x.clear(pfd, base, rel, isDir)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeLink {
		return x.hardlink(pfd, base, hdr)
	}
	if err := x.create(pfd, base, hdr, tr, exists); err != nil {
		return err
	}

	symlink := hdr.Typeflag == tar.TypeSymlink
	if err := x.setMeta(pfd, base, hdr, symlink); err != nil {
		return err
	}
	if isDir {
		x.dirTimes[rel] = entryTimes(hdr)
		return nil
	}
	if err := unix.UtimesNanoAt(pfd, base, entryTimes(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// clear removes whatever an earlier entry (or, for Unpack, dest) left at
// base, unless both are directories: exists then reports that the
// directory is kept.
func (x *extractor) clear(pfd int, base, rel string, isDir bool) (exists bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if isDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			exists = true
		} else {
			if err := removeAllAt(pfd, base); err != nil {
				return false, fmt.Errorf("replace existing entry: %w", err)
			}
			x.forgetDirs(rel)
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return false, err
	}
	return exists, nil
}

// create makes the file, directory, symlink or device of hdr at base
// (not a hardlink: see hardlink).
func (x *extractor) create(pfd int, base string, hdr *tar.Header, tr io.Reader, exists bool) error {
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !exists {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return err
			}
		}
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse: // the reader turns TypeRegA into TypeReg
		if err := x.writeFile(pfd, base, tr); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return err
		}
	case tar.TypeChar:
		if err := unix.Mknodat(pfd, base, unix.S_IFCHR|0o600, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
	case tar.TypeBlock:
		if err := unix.Mknodat(pfd, base, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
	case tar.TypeFifo:
		if err := unix.Mknodat(pfd, base, unix.S_IFIFO|0o600, 0); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	return nil
}

func entryTimes(hdr *tar.Header) []unix.Timespec {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
}

// writeFile creates base in pfd (exclusively, never through a symlink) with the
// entry's content.
func (x *extractor) writeFile(pfd int, base string, r io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	err = writeSparse(f, r, x.buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write content: %w", err)
	}
	return nil
}

// holeBlock is the unit writeSparse leaves as a hole when it is all zeros.
const holeBlock = 4096

var zeroBlock [holeBlock]byte

// writeSparse copies r into the empty file f, leaving every run of zero
// blocks as a hole (as GNU tar does for --sparse archives, and cp by
// default), so a sparse file in a layer — the holes of which the tar reader
// returns as zeros — takes only its data's space on disk, not its size.
// Reading the file gives the same bytes either way.
func writeSparse(f *os.File, r io.Reader, buf []byte) error {
	var off int64
	for {
		n, rerr := fill(r, buf)
		b := buf[:n]
		for len(b) > 0 {
			// the next run of non-zero blocks, written at once
			end := 0
			for end < len(b) && !isZeroBlock(b[end:min(end+holeBlock, len(b))]) {
				end = min(end+holeBlock, len(b))
			}
			if end > 0 {
				if _, err := f.WriteAt(b[:end], off); err != nil {
					return err
				}
				off += int64(end)
				b = b[end:]
			}
			// then skip the run of zero blocks
			for len(b) > 0 && isZeroBlock(b[:min(holeBlock, len(b))]) {
				k := min(holeBlock, len(b))
				off += int64(k)
				b = b[k:]
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	// A file that ends in a hole gets its size from the truncate.
	return f.Truncate(off)
}

// fill reads from r until buf is full or r fails; unlike io.ReadFull it
// passes r's error through unchanged (io.EOF at the end, whatever else on a
// truncated stream).
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func isZeroBlock(b []byte) bool { return string(b) == string(zeroBlock[:len(b)]) }

// hardlink links base in pfd to hdr.Linkname, a path of the archive resolved
// inside the root (the target itself is linked, not what it may point to).
func (x *extractor) hardlink(pfd int, base string, hdr *tar.Header) error {
	target := hdr.Linkname
	trel, err := cleanEntryName(target, !x.layer)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", target, err)
	}
	if trel == "." {
		return fmt.Errorf("hardlink target %q: is the root", target)
	}
	if x.flat && !x.want(trel) {
		return fmt.Errorf("hardlink to %q: %w", target, ErrMissingLinkTarget)
	}
	tparent, tbase := splitRel(trel)
	tfd, err := x.root.openDir(tparent)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", target, err)
	}
	defer unix.Close(tfd)
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("hardlink to %q: %w", target, err)
	}
	if x.layer {
		return nil
	}
	// ADD, as BuildKit (moby/go-archive) extracts: the link entry's owner
	// (or the --chown one), mode and xattrs go to the file both names
	// share (a symlink keeps its mode), and its times unless it is a symlink.
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return x.setMeta(pfd, base, hdr, true)
	}
	if err := x.setMeta(pfd, base, hdr, false); err != nil {
		return err
	}
	if err := unix.UtimesNanoAt(pfd, base, entryTimes(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// setMeta gives base in pfd the owner of hdr (of x.owner if set), its mode
// unless base is a symlink, and its xattrs.
func (x *extractor) setMeta(pfd int, base string, hdr *tar.Header, symlink bool) error {
	uid, gid := hdr.Uid, hdr.Gid
	if x.owner != nil {
		uid, gid = x.owner.UID, x.owner.GID
	}
	if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("lchown: %w", err)
	}
	if !symlink { // chmod after chown, which clears setuid/setgid
		if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	return x.setXattrs(pfd, base, hdr)
}

// destEntry applies an ADD archive's entry named "/": a directory entry
// gives dest its owner, mode, xattrs and times; any other type would
// replace dest and is an error.
func (x *extractor) destEntry(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("entry of type %q would replace the destination directory", hdr.Typeflag)
	}
	// dest's parent is outside the root: address dest as "." in itself.
	if err := x.setMeta(x.root.fd, ".", hdr, false); err != nil {
		return err
	}
	x.dirTimes["."] = entryTimes(hdr) // set at the end, by setDirTimes
	return nil
}

// forgetDirs drops the recorded mtimes of rel and everything below it, which
// an entry just replaced.
func (x *extractor) forgetDirs(rel string) {
	delete(x.dirTimes, rel)
	prefix := rel + "/"
	for k := range x.dirTimes {
		if strings.HasPrefix(k, prefix) {
			delete(x.dirTimes, k)
		}
	}
}

// setDirTimes sets the recorded directory mtimes once all children exist.
func (x *extractor) setDirTimes() error {
	rels := make([]string, 0, len(x.dirTimes))
	for rel := range x.dirTimes {
		rels = append(rels, rel)
	}
	slices.Sort(rels)
	for _, rel := range slices.Backward(rels) {
		parent, base := splitRel(rel)
		pfd, err := x.root.openDir(parent)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue // a later entry replaced a parent (through a symlink path)
		}
		if err != nil {
			return fmt.Errorf("set directory times %q: %w", rel, err)
		}
		var st unix.Stat_t
		if serr := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = unix.UtimesNanoAt(pfd, base, x.dirTimes[rel], unix.AT_SYMLINK_NOFOLLOW)
		}
		unix.Close(pfd)
		if err != nil {
			return fmt.Errorf("set directory times %q: %w", rel, err)
		}
	}
	return nil
}

// setXattrs restores the SCHILY.xattr records of hdr on base in pfd.
func (x *extractor) setXattrs(pfd int, base string, hdr *tar.Header) error {
	const prefix = "SCHILY.xattr."
	var keys []string
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, prefix) && !skipXattr(k[len(prefix):]) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys) // security.capability must survive; order is irrelevant otherwise
	for _, k := range keys {
		key := k[len(prefix):]
		err := unix.Lsetxattr(procPath(pfd, base), key, []byte(hdr.PAXRecords[k]), 0)
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOTSUP):
			// The filesystem cannot hold it (e.g. user.* on a symlink or device).
		case errors.Is(err, unix.EPERM) && strings.HasPrefix(key, "user.") &&
			hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeDir:
		default:
			return fmt.Errorf("set xattr %s: %w", key, err)
		}
	}
	return nil
}

func readDirNames(fd int) ([]string, error) {
	// fd may be an O_PATH descriptor: open the directory itself for reading.
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dfd), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}
