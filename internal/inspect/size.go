package inspect

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/store"
)

// LayerSizes returns the content size of each layer of img (manifest order):
// the bytes of the regular files it holds plus the length of its symlink
// targets, each hardlinked file once; directories and whiteouts count 0. This
// is what docker history and docker's image size count. A layer unpacked in
// the store is measured on disk (stat only); others are read from their blob.
func LayerSizes(ctx context.Context, s *store.Store, img *image.Image) ([]int64, error) {
	sizes := make([]int64, len(img.Layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, l := range img.Layers {
		g.Go(func() error {
			if s.HasLayer(l.DiffID) {
				if n, err := DirSize(gctx, s.LayerDir(l.DiffID)); err == nil {
					sizes[i] = n
					return nil
				}
			}
			n, err := BlobContentSize(gctx, s, l)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i+1, l.Digest, err)
			}
			sizes[i] = n
			return nil
		})
	}
	return sizes, g.Wait()
}

// BlobContentSize reads the content size of layer l from its blob.
func BlobContentSize(ctx context.Context, s *store.Store, l image.Layer) (int64, error) {
	f, err := s.OpenBlob(l.Digest)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	es, err := ReadEntries(ctx, f)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range es {
		n += e.Size
	}
	return n, nil
}

// DirSize is the content size of an unpacked layer directory: regular files
// (each inode once) and symlink targets.
func DirSize(ctx context.Context, dir string) (int64, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				k := inode{uint64(st.Dev), st.Ino}
				if seen[k] {
					return nil
				}
				seen[k] = true
			}
			n += fi.Size()
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			n += int64(len(t))
		}
		return nil
	})
	return n, err
}

// ImageSize is the content size of img: the sum of its LayerSizes, as docker
// images and docker inspect show it. On an error it returns the sum of what
// it could measure with the error.
func ImageSize(ctx context.Context, s *store.Store, img *image.Image) (int64, error) {
	sizes, err := LayerSizes(ctx, s, img)
	var n int64
	for _, l := range sizes {
		n += l
	}
	return n, err
}
