package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/snapshot/overlay"
)

// lowers returns overlay lowerdirs (top-most first) for layer dirs (bottom first).
func lowers(dirs []string) []string { return overlay.Lowers(dirs) }

// change mounts a writable snapshot of the stage's current filesystem, lets
// fn change it, and commits the changes (the overlay upperdir) as a new
// layer. It reports whether anything changed. The mount is released on every
// path.
func (sb *stageBuilder) change(ctx context.Context, createdBy string, fn func(rootfs string) error) error {
	b := sb.r.b
	dir, err := os.MkdirTemp(b.Session.Dir, "snap-")
	if err != nil {
		return fmt.Errorf("new snapshot: %w", err)
	}
	defer os.RemoveAll(dir)
	upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("new snapshot: %w", err)
		}
	}
	if err := overlay.Mount(ctx, lowers(sb.state.dirs), upper, work, merged); err != nil {
		return fmt.Errorf("mount snapshot: %w", err)
	}
	ferr := fn(merged)
	if err := overlay.Unmount(merged); err != nil && ferr == nil {
		ferr = fmt.Errorf("unmount snapshot: %w", err)
	}
	if ferr != nil {
		return ferr
	}
	empty, err := isEmptyDir(upper)
	if err != nil {
		return err
	}
	if empty {
		sb.history(createdBy, true)
		return nil
	}
	l, err := sb.commit(ctx, upper)
	if err != nil {
		return err
	}
	sb.state.layers = append(sb.state.layers, l)
	sb.state.dirs = append(sb.state.dirs, b.Store.LayerDir(l.DiffID))
	sb.history(createdBy, false)
	return nil
}

// commit writes the upperdir as a compressed layer blob and moves the
// directory into the store as the unpacked layer.
func (sb *stageBuilder) commit(ctx context.Context, upper string) (image.Layer, error) {
	s := sb.r.b.Store
	w, err := s.NewBlobWriter()
	if err != nil {
		return image.Layer{}, err
	}
	defer w.Close()
	blob, err := layer.Commit(ctx, upper, w, sb.r.opts.Compression, layer.DiffOptions{})
	if err != nil {
		return image.Layer{}, fmt.Errorf("commit layer: %w", err)
	}
	if _, _, err := w.Commit(blob.Digest); err != nil {
		return image.Layer{}, err
	}
	if err := os.Chmod(upper, 0o755); err != nil {
		return image.Layer{}, err
	}
	if err := s.AdoptLayerDir(blob.DiffID, upper); err != nil {
		return image.Layer{}, err
	}
	return image.Layer{Digest: blob.Digest, DiffID: blob.DiffID, Size: blob.Size, MediaType: blob.MediaType}, nil
}

// view mounts a read-only view of layer dirs (bottom first) and calls fn
// with its root; for no layers the root is an empty directory.
func (b *Builder) view(ctx context.Context, dirs []string, fn func(root string) error) error {
	dir, err := os.MkdirTemp(b.Session.Dir, "view-")
	if err != nil {
		return fmt.Errorf("new view: %w", err)
	}
	defer os.RemoveAll(dir)
	if len(dirs) == 0 {
		return fn(dir)
	}
	if l := lowers(dirs); len(l) == 1 {
		return fn(l[0])
	}
	if err := overlay.Mount(ctx, lowers(dirs), "", "", dir); err != nil {
		return fmt.Errorf("mount view: %w", err)
	}
	ferr := fn(dir)
	if err := overlay.Unmount(dir); err != nil && ferr == nil {
		ferr = fmt.Errorf("unmount view: %w", err)
	}
	return ferr
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}
