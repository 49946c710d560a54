package builder

import (
	"context"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/source"
	"github.com/strata-build/strata/internal/store"
)

// services are what the steps of every stage use and none owns: the store
// and the session's directories, the snapshotter, the runtime that runs
// RUN, the registry, the progress printer, the build's options and the
// bounds the Builder sets.
type services struct {
	store     *store.Store
	session   *store.Session
	snapshots snapshot.Snapshotter // nil without a session (a check run)
	runner    executor.Executor
	registry  *registry.Client
	progress  *progress.Printer
	opts      *Options
	unpack    layer.ApplyOptions // bounds what a layer or an archive unpacks to
	http      source.HTTPOptions // bounds an ADD URL download
}

// services returns the Builder's services for a build with opts.
func (b *Builder) services(opts *Options) services {
	s := services{store: b.Store, session: b.Session, runner: b.Runner, registry: b.Registry,
		progress: opts.Progress, opts: opts, unpack: b.applyOptions(), http: b.httpOptions()}
	if b.Snapshots != nil || b.Session != nil {
		s.snapshots = b.snapshots()
	}
	return s
}

// layerDirs unpacks (once, shared by every build) the layers of img into
// st and returns their directories, bottom first.
func layerDirs(ctx context.Context, st *store.Store, bound layer.ApplyOptions, img *image.Image) ([]string, error) {
	dirs := make([]string, 0, len(img.Layers))
	for _, l := range img.Layers {
		d, err := unpackLayer(ctx, st, bound, l)
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// unpackLayer unpacks layer l from its blob into st, once, and returns its
// directory.
func unpackLayer(ctx context.Context, st *store.Store, bound layer.ApplyOptions, l image.Layer) (string, error) {
	return st.EnsureLayer(ctx, l.DiffID, l.Digest, func(ctx context.Context, dir string, blob *os.File) (digest.Digest, error) {
		return layer.Apply(ctx, dir, blob, bound)
	})
}

// layerDirs is layerDirs in the build's store.
func (s *services) layerDirs(ctx context.Context, img *image.Image) ([]string, error) {
	return layerDirs(ctx, s.store, s.unpack, img)
}

// openImage unpacks img's layers (once) and opens a read-only view of them
// as a source called name, with the cache key given ("" hashes its files).
func (s *services) openImage(ctx context.Context, img *image.Image, name, key string) (*source.Source, error) {
	dirs, err := s.layerDirs(ctx, img)
	if err != nil {
		return nil, err
	}
	return source.Open(ctx, s.snapshots, dirs, name, key)
}
