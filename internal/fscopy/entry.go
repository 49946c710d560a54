package fscopy

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/layer"
)

// copyEntry writes one file, directory, symlink or special file at target.
func (c *copier) copyEntry(srcHost string, fi os.FileInfo, target string) error {
	dst, err := c.hostPath(target)
	if err != nil {
		return err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	uid, gid := 0, 0
	if c.src.KeepOwner && st != nil {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	if c.o.Owner != nil {
		uid, gid = c.o.Owner.UID, c.o.Owner.GID
	}
	mode := fi.Mode()
	if c.o.Chmod != nil && mode&os.ModeSymlink == 0 {
		mode = c.o.Chmod.Apply(mode)
	}
	c.linkMu.Lock()
	if c.deferred != nil {
		delete(c.deferred, c.upperRel(dst)) // a later source wins
	}
	c.linkMu.Unlock()
	if c.out != nil {
		c.out.set(filepath.ToSlash(c.upperRel(dst)), "") // known again once written
	}
	existing, lerr := os.Lstat(dst)
	if lerr == nil {
		if fi.IsDir() && existing.IsDir() {
			// Merge into the existing directory; it takes the source's metadata.
			return applyMeta(dst, uid, gid, mode, fi, false)
		}
		c.lastDir.ok = false // what is replaced may be on a cached path
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
		return c.copyRegular(srcHost, fi, st, dst, uid, gid, mode)
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

// copyRegular writes the regular file srcHost (fi, st: its stat data) at
// dst with owner uid:gid and mode: as a hardlink to what the copy wrote
// for another name of the same source file, as a hardlink to the file in
// a source layer, or as a copy (in parallel when c.files is set).
func (c *copier) copyRegular(srcHost string, fi os.FileInfo, st *syscall.Stat_t, dst string, uid, gid int, mode os.FileMode) error {
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
		src := c.src
		c.goFile(func() error {
			if c.linkFromPrevious(src, srcHost, fi, st, dst, uid, gid, mode) {
				return nil
			}
			if err := c.copyData(src, srcHost, fi, dst); err != nil {
				return err
			}
			return applyMeta(dst, uid, gid, mode, fi, true)
		}, fi.Size())
		return nil
	}
	if c.linkFromPrevious(c.src, srcHost, fi, st, dst, uid, gid, mode) {
		return nil
	}
	if err := c.copyData(c.src, srcHost, fi, dst); err != nil {
		return err
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
	if c.o.Owner != nil {
		o = &layer.Owner{UID: c.o.Owner.UID, GID: c.o.Owner.GID}
	}
	if err := layer.Unpack(ctx, d, f, o, c.o.Bound); err != nil {
		return fmt.Errorf("extract %s: %w", filepath.Base(host), err)
	}
	return nil
}

// goFile hands the copy of one file's data (size bytes) to c.files. Small
// files go in batches: a goroutine per file costs more than linking or
// copying a few kilobytes.
func (c *copier) goFile(job func() error, size int64) {
	c.batch = append(c.batch, job)
	c.batchBytes += size
	if len(c.batch) >= 64 || c.batchBytes >= 1<<20 {
		c.flushFiles()
	}
}

// flushFiles starts the batch of file copies goFile collected.
func (c *copier) flushFiles() {
	if len(c.batch) == 0 {
		return
	}
	batch := c.batch
	c.batch, c.batchBytes = nil, 0
	c.files.Go(func() error {
		for _, job := range batch {
			if err := c.filesCtx.Err(); err != nil {
				return err
			}
			if err := job(); err != nil {
				return err
			}
		}
		return nil
	})
}
