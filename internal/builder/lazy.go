package builder

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/human"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/plan"
	"github.com/strata-build/strata/internal/store"
)

// Layers without blobs.
//
// A stage outside the target's FROM chain (a builder stage that the target
// only copies files out of) is never exported, so compressing its layers
// when they are committed is wasted work on the build's critical path: in
// a compile-in-one-stage build the builder's RUN layer (a Go build cache,
// say) is often the largest layer the build makes. Such layers are
// committed lazily: the upper directory becomes the unpacked layer, named by
// its diffID (the digest of its tar, hashed without writing anything), and
// the cache records it without a blob. The blob is made from the directory
// when something first needs it: a later build whose image contains the
// layer (--target builder), or a cache export. The tar of a directory is
// deterministic, so the blob then has the recorded diffID; that is checked.
// BuildKit does the same: it makes blobs for exported layers only.

// eagerStages returns the stages whose layers are compressed when they are
// committed: the target and the stages it is built on (FROM), whose layers
// make up the image — compressing them while other work runs keeps that
// off the end of the build — and every stage when a cache export in mode
// max will need all layers anyway.
func eagerStages(all []*plan.Stage, target int, cacheTo []CacheSpec) map[int]bool {
	eager := map[int]bool{}
	for _, s := range cacheTo {
		if s.Type != "inline" && s.Mode == "max" {
			for i := range all {
				eager[i] = true
			}
			return eager
		}
	}
	for i := target; i >= 0; i = all[i].BaseStage {
		eager[i] = true
	}
	return eager
}

// commit records the upperdir as a layer and moves the directory into the
// store as the unpacked layer: with a compressed blob written on the way
// for a stage whose layers are exported, or by its diffID alone otherwise.
func (sb *stageBuilder) commit(ctx context.Context, upper string, prev *cache.Record) (*cache.Layer, error) {
	var l *cache.Layer
	if sb.r.eager[sb.st.Index] {
		m, err := sb.r.writeLayerBlob(ctx, upper, "", sb.reuseFor(prev))
		if err != nil {
			return nil, fmt.Errorf("commit layer: %w", err)
		}
		l = &cache.Layer{Blob: m}
	} else {
		id, err := layer.DiffID(ctx, upper, sb.r.diffOptions())
		if err != nil {
			return nil, fmt.Errorf("commit layer: %w", err)
		}
		l = &cache.Layer{Blob: layer.Blob{DiffID: id}}
		if e := sb.svc.opts.SourceDateEpoch; e != nil {
			n := e.Unix()
			l.Epoch = &n
		}
	}
	if err := os.Chmod(upper, 0o755); err != nil {
		return nil, err
	}
	if err := sb.svc.store.AdoptLayerDir(l.DiffID, upper); err != nil {
		return nil, err
	}
	return l, nil
}

// diffOptions are the options every layer tar of the build is made with.
func (r *run) diffOptions() layer.DiffOptions {
	b := r.b.applyOptions()
	return layer.DiffOptions{Epoch: r.opts.SourceDateEpoch, Level: r.opts.CompressionLevel, MaxBytes: b.MaxBytes, BoundHint: b.BoundHint}
}

// layerBlob makes sure the blob of l is in the store and returns l with its
// digest, size and media type: a --cache-from blob is fetched, a layer
// committed without a blob is compressed now from its unpacked directory
// (once per build) and the cache records this build used for it are
// updated to name the blob.
func (r *run) layerBlob(ctx context.Context, l image.Layer) (image.Layer, error) {
	if l.Digest != "" {
		return l, r.ensureBlob(ctx, l.Digest)
	}
	r.blobMu.Lock()
	defer r.blobMu.Unlock()
	if m, ok := r.madeBlobs[l.DiffID]; ok {
		return m, nil
	}
	dir := r.b.Store.LayerDir(l.DiffID)
	if !r.b.Store.HasLayer(l.DiffID) {
		return l, fmt.Errorf("layer %s has no blob and its unpacked directory %s is gone", l.DiffID, dir)
	}
	start := time.Now()
	m, err := r.writeLayerBlob(ctx, dir, l.DiffID, commitReuse{})
	if err != nil {
		return l, fmt.Errorf("compress layer %s: %w", l.DiffID, err)
	}
	if r.madeBlobs == nil {
		r.madeBlobs = map[digest.Digest]image.Layer{}
	}
	r.madeBlobs[l.DiffID] = m
	r.recordBlob(m)
	r.opts.Progress.Logf("compressed layer %s, cached without a blob until now: %s in %.1fs", l.DiffID.Encoded()[:12], human.Size(m.Size), time.Since(start).Seconds())
	return m, nil
}

// writeLayerBlob writes the compressed layer blob of dir (an upper or an
// unpacked layer directory) into the store, unless its diffID is not
// wantDiffID (when that is set), taking what it can from reuse, and
// records its member index.
func (r *run) writeLayerBlob(ctx context.Context, dir string, wantDiffID digest.Digest, reuse commitReuse) (image.Layer, error) {
	w, err := r.b.Store.NewBlobWriter()
	if err != nil {
		return image.Layer{}, err
	}
	defer w.Close()
	w.Hashed() // layer.Commit hashes the blob
	opts := r.diffOptions()
	opts.Known = reuse.known
	blob, members, err := layer.Commit(ctx, dir, w, r.opts.Compression, opts, reuse.blobs...)
	if err != nil {
		return image.Layer{}, err
	}
	if wantDiffID != "" && blob.DiffID != wantDiffID {
		return image.Layer{}, fmt.Errorf("its unpacked directory %s now has diffID %s (changed since it was built); `strata fsck --repair` removes it and the steps that made it run again", dir, blob.DiffID)
	}
	if _, _, err := w.Commit(blob.Digest); err != nil {
		return image.Layer{}, err
	}
	if len(members.List) > 0 {
		if err := r.b.Store.PutSidecar(store.SidecarMembers, blob.Digest, members); err != nil {
			r.opts.Progress.Logf("warning: %v", err)
		}
	}
	return blob, nil
}

// recordBlob gives the blob of m to the records this build used or made
// for its diffID without a blob, in the cache index and in r.used.
func (r *run) recordBlob(m image.Layer) {
	for _, e := range r.used.SetBlob(m) {
		rec := e.Record
		if err := r.cache.Put(e.Key, &rec); err != nil {
			r.opts.Progress.Logf("warning: recording the blob of layer %s: %v", m.DiffID, err)
		}
	}
}

// layerBlobs is layerBlob for each of ls, in place.
func (r *run) layerBlobs(ctx context.Context, ls []image.Layer) error {
	for i := range ls {
		l, err := r.layerBlob(ctx, ls[i])
		if err != nil {
			return err
		}
		ls[i] = l
	}
	return nil
}
