package overlay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/snapshot"
)

// Snapshotter makes overlayfs snapshots below a directory it is given: each
// writable snapshot is a folder snap-* with upper, work and merged in it, the
// overlay of the parents mounted at merged with its upper directory as the
// diff; a view is an overlay without upper (read-only).
//
// Fast paths: a snapshot without parents is not mounted (its upper
// directory is the whole filesystem and is written directly); a view of one
// layer is that layer's directory, a view of none an empty directory.
type Snapshotter struct {
	dir string
}

var _ snapshot.Snapshotter = (*Snapshotter)(nil)

// New returns a Snapshotter that works below dir, an existing directory.
func New(dir string) *Snapshotter { return &Snapshotter{dir: dir} }

// Prepare mounts a writable overlay of parents (bottom first).
func (s *Snapshotter) Prepare(ctx context.Context, parents []string) (snapshot.Snapshot, error) {
	dir, err := os.MkdirTemp(s.dir, "snap-")
	if err != nil {
		return nil, fmt.Errorf("new snapshot: %w", err)
	}
	sn := &Snapshot{
		dir:    dir,
		lowers: snapshot.Lowers(parents),
		upper:  filepath.Join(dir, "upper"),
		work:   filepath.Join(dir, "work"),
		merged: filepath.Join(dir, "merged"),
	}
	for _, d := range []string{sn.upper, sn.work, sn.merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			sn.Remove()
			return nil, fmt.Errorf("new snapshot: %w", err)
		}
	}
	if len(sn.lowers) == 0 {
		// Nothing below: the upper directory is the whole filesystem, so it
		// is written directly, without overlayfs's cost on every file.
		return sn, nil
	}
	if err := Mount(ctx, sn.lowers, sn.upper, sn.work, sn.merged); err != nil {
		sn.Remove()
		return nil, fmt.Errorf("mount snapshot: %w", err)
	}
	sn.mounted = true
	return sn, nil
}

// Snapshot is a writable overlay snapshot (see Snapshotter).
type Snapshot struct {
	dir                 string
	lowers              []string // top-most first
	upper, work, merged string
	mounted             bool // merged is mounted
	removed             bool
}

// Root is the merged overlay, or the upper directory when there are no
// parents.
func (sn *Snapshot) Root() string {
	if len(sn.lowers) == 0 {
		return sn.upper
	}
	return sn.merged
}

// Upper is the overlay's upper directory.
func (sn *Snapshot) Upper() string { return sn.upper }

// Seal unmounts the overlay.
func (sn *Snapshot) Seal() error {
	if !sn.mounted {
		return nil
	}
	if err := Unmount(sn.merged); err != nil {
		return fmt.Errorf("unmount snapshot: %w", err)
	}
	sn.mounted = false
	return nil
}

// Diff unmounts the overlay and returns its upper directory without the
// entries overlayfs copied up but nothing changed (layer.PruneUnchanged).
func (sn *Snapshot) Diff(ctx context.Context) (string, error) {
	if err := sn.Seal(); err != nil {
		return "", err
	}
	if err := layer.PruneUnchanged(ctx, sn.upper, sn.lowers); err != nil {
		return "", err
	}
	return sn.upper, nil
}

// Remove unmounts the overlay if it is still mounted and removes the
// snapshot's folder. When the unmount fails the folder is left (removing
// files through a mount would not free them) for the session's cleanup,
// which unmounts whatever is below it.
func (sn *Snapshot) Remove() error {
	if sn.removed {
		return nil
	}
	if err := sn.Seal(); err != nil {
		return err
	}
	if err := os.RemoveAll(sn.dir); err != nil {
		return fmt.Errorf("remove snapshot: %w", err)
	}
	sn.removed = true
	return nil
}

// View mounts a read-only overlay of parents (bottom first).
func (s *Snapshotter) View(ctx context.Context, parents []string) (snapshot.View, error) {
	l := snapshot.Lowers(parents)
	if len(l) == 1 {
		return &view{root: l[0]}, nil
	}
	dir, err := os.MkdirTemp(s.dir, "view-")
	if err != nil {
		return nil, fmt.Errorf("new view: %w", err)
	}
	v := &view{root: dir, dir: dir}
	if len(l) == 0 {
		return v, nil
	}
	if err := Mount(ctx, l, "", "", dir); err != nil {
		v.Remove()
		return nil, fmt.Errorf("mount view: %w", err)
	}
	v.mounted = true
	return v, nil
}

// view is a read-only overlay at dir, or (dir empty) a parent's directory.
type view struct {
	root, dir string
	mounted   bool
}

func (v *view) Root() string { return v.root }

func (v *view) Remove() error {
	if v.mounted {
		if err := Unmount(v.dir); err != nil {
			return fmt.Errorf("unmount view: %w", err)
		}
		v.mounted = false
	}
	if v.dir != "" {
		if err := os.RemoveAll(v.dir); err != nil {
			return fmt.Errorf("remove view: %w", err)
		}
		v.dir = ""
	}
	return nil
}
