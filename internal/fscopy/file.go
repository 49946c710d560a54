package fscopy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/layer"
)

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

// copyData writes the regular file srcHost (fi: its stat data) of src to
// dst, recording its checksum when src records them, and notes the
// checksum of what it wrote in c.out when that is known.
func (c *copier) copyData(src *Source, srcHost string, fi os.FileInfo, dst string) error {
	var (
		sum       string
		unchanged bool
		err       error
	)
	if src.Sums != nil && src.Record {
		bp, ok := c.bufs.Get().(*[]byte)
		if !ok {
			b := make([]byte, 256<<10)
			bp = &b
		}
		defer c.bufs.Put(bp)
		sum, unchanged, err = copyFile(srcHost, dst, fi, src.Sums, *bp)
	} else {
		_, unchanged, err = copyFile(srcHost, dst, fi, nil, nil)
		if unchanged && src.Sums != nil {
			sum, _ = src.Sums.Known(srcHost, fi)
		}
	}
	if err == nil && unchanged && c.out != nil && sum != "" {
		c.out.set(filepath.ToSlash(c.upperRel(dst)), sum)
	}
	return err
}

// CopyFile copies the data of the regular file src to a new file dst
// (mode 0600, owner and times not set): in the kernel where it can, and a
// sparse file's holes left holes.
func CopyFile(src, dst string) error {
	_, _, err := copyFile(src, dst, nil, nil, nil)
	return err
}

// copyFile copies the regular file src to a new file dst. Without sums it
// uses File.ReadFrom, not io.Copy: io.Copy prefers src's WriteTo, which for
// a file destination falls back to a read/write loop through a user-space
// buffer, where ReadFrom tries copy_file_range first (an in-kernel copy, or
// a reflink on filesystems that share extents). With sums it copies through
// buf, hashing what it reads, and records the sha256 when src did not
// change while it was read (fi: its stat data before): the build context is
// then read once for both the copy and the step's cache key. It returns the
// sha256 of what it copied (with sums) and whether src's stat data after
// the copy is still fi's.
func copyFile(src, dst string, fi os.FileInfo, sums *buildctx.Sums, buf []byte) (sum string, unchanged bool, err error) {
	in, err := layer.OpenFile(src, unix.O_RDONLY, 0)
	if err != nil {
		return "", false, err
	}
	defer in.Close()
	out, err := layer.OpenFile(dst, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return "", false, err
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
		return "", false, fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return "", false, fmt.Errorf("copy %s: %w", src, err)
	}
	after, serr := in.Stat()
	if serr != nil || fi == nil || !buildctx.Unchanged(fi, after) {
		return "", false, nil
	}
	if sums == nil {
		return "", true, nil
	}
	sum = hex.EncodeToString(h.Sum(nil))
	sums.Record(src, fi, after, sum)
	return sum, true, nil
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
