package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/plan"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/snapshot/native"
	"github.com/strata-build/strata/internal/snapshot/overlay"
)

// SnapshotterEnv names the environment variable the CLI reads the
// snapshotter from: "overlay" (the default) or "native" (no mounts).
const SnapshotterEnv = "STRATA_SNAPSHOTTER"

// NewSnapshotter returns the snapshotter called name ("" is overlay)
// working below dir (a session's directory).
func NewSnapshotter(name, dir string) (snapshot.Snapshotter, error) {
	switch name {
	case "", "overlay":
		return overlay.New(dir), nil
	case "native":
		return native.New(dir), nil
	}
	return nil, fmt.Errorf("%s=%q: unknown snapshotter (use overlay or native)", SnapshotterEnv, name)
}

// snapshots is the Builder's snapshotter: Snapshots, or overlay snapshots
// in the session's directory.
func (b *Builder) snapshots() snapshot.Snapshotter {
	if b.Snapshots != nil {
		return b.Snapshots
	}
	return overlay.New(b.Session.Dir)
}

// change runs one filesystem-changing step. With the cache on and a record
// for the step's key (its parent's key and inputs), the recorded layer is
// reused. Otherwise it prepares a writable snapshot of the stage's current
// filesystem, lets fn change it, and commits the snapshot's diff as a new
// layer, recording it under the key. The snapshot is removed on every path.
func (sb *stageBuilder) change(ctx context.Context, p *progress.Step, createdBy string, inputs []cache.Input, fn func(rootfs string) error) error {
	return sb.changeOn(ctx, p, createdBy, inputs, false, fn)
}

// changeOn is change with an empty filesystem below (scratch true, for COPY
// --link) or the stage's own layers.
func (sb *stageBuilder) changeOn(ctx context.Context, p *progress.Step, createdBy string, inputs []cache.Input, scratch bool, fn func(rootfs string) error) error {
	return sb.changeKeyed(ctx, p, createdBy, scratch, func(rootfs, _ string) (func() error, error) {
		return nil, fn(rootfs)
	}, inputs, nil)
}

// changeKeyed is changeOn with the step's inputs known before fn runs
// (inputs), or only once it has run (late, when not nil). The late form is
// speculative: fn does its work first (a COPY that hashes the files it
// copies), then the key is looked up; on a hit the new snapshot is thrown
// away and the recorded layer used, exactly as if it had been looked up
// first. fn gets the snapshot's root and its upper directory (the same
// directory when the snapshot is written directly); the finish it
// returns, if any, runs once the snapshot is sealed (unmounted), when the
// upper directory may be changed directly.
func (sb *stageBuilder) changeKeyed(ctx context.Context, p *progress.Step, createdBy string, scratch bool, fn func(rootfs, upper string) (finish func() error, err error), inputs []cache.Input, late func() ([]cache.Input, error)) error {
	pos := sb.cache.pos(sb.step)
	defer sb.cache.endStep()
	sb.beginReuse(pos)
	defer sb.endReuse("") // on every path: waits for collectFiles
	var key cache.Key
	if late == nil {
		key, inputs = sb.cache.key(sb.state.key, inputs)
		if sb.tryCached(p, key, createdBy, pos, inputs) {
			return nil
		}
		unlock, waited, err := sb.r.b.steps.lock(ctx, key)
		if err != nil {
			return err
		}
		defer unlock()
		if waited && sb.tryCached(p, key, createdBy, pos, inputs) {
			return nil // another build ran this step meanwhile
		}
	}
	var parents []string
	sb.retake = nil // the step reads the files the layers make: they stay
	if !scratch {
		var err error
		if parents, err = sb.r.ensureDirs(ctx, sb.state); err != nil {
			return err
		}
	}
	snap, err := sb.svc.snapshots.Prepare(ctx, parents)
	if err != nil {
		return err
	}
	defer snap.Remove()
	finish, ferr := fn(snap.Root(), snap.Upper())
	if err := snap.Seal(); err != nil && ferr == nil {
		ferr = err
	}
	if ferr == nil && finish != nil {
		ferr = finish()
	}
	if ferr != nil {
		return ferr
	}
	if late != nil {
		in, err := late()
		if err != nil {
			return err
		}
		key, inputs = sb.cache.key(sb.state.key, in)
		if sb.tryCached(p, key, createdBy, pos, inputs) {
			return nil // the snapshot just made is removed
		}
	}
	diff, err := snap.Diff(ctx)
	if err != nil {
		return err
	}
	empty, err := isEmptyDir(diff)
	if err != nil {
		return err
	}
	rec := &cache.Record{Created: sb.svc.now()}
	if !empty {
		sb.collectFiles(diff)
		l, err := sb.commit(ctx, diff, sb.reuse.prev)
		if err != nil {
			return err
		}
		rec.Layer = l
		sb.endReuse(l.DiffID)
	}
	if err := sb.cache.put(sb.state.key, key, *rec, pos, inputs); err != nil {
		return err
	}
	sb.apply(rec, createdBy)
	sb.state.key = cache.After(sb.state.key, rec)
	return nil
}

// tryCached applies the record of key when the cache has a usable one and
// reports whether it did; on a miss it gives the step its reason.
func (sb *stageBuilder) tryCached(p *progress.Step, key cache.Key, createdBy, pos string, inputs []cache.Input) bool {
	if rec, ok := sb.cache.find(key); ok {
		sb.hit(key, rec, createdBy, p, pos, inputs)
		return true
	}
	if !sb.cache.enabled {
		return false
	}
	if key, rec, ok := sb.retakeHit(inputs); ok {
		sb.hit(key, rec, createdBy, p, pos, inputs)
		return true
	}
	if reason := sb.cache.missReason(pos, inputs); p != nil {
		p.SetReason(reason)
		if sb.svc.opts.DebugCache {
			sb.svc.progress.Logf("cache miss [%s %d/%d]: %s", sb.display(), sb.step, sb.total, reason)
		}
	}
	return false
}

// hit applies a cache hit for key.
func (sb *stageBuilder) hit(key cache.Key, rec *cache.Record, createdBy string, p *progress.Step, pos string, inputs []cache.Input) {
	parent := sb.state.key
	sb.cache.hit(parent, key, rec, pos, inputs)
	sb.apply(rec, createdBy)
	sb.state.key = cache.After(parent, rec)
	sb.noteRetake(parent, key, rec)
	if p != nil {
		p.MarkCached()
	}
}

// tryAlias looks the step up by a cheap key (see stepCache.tryAlias): a
// hit applies it and returns true.
func (sb *stageBuilder) tryAlias(p *progress.Step, createdBy string, aliasInputs []cache.Input) bool {
	key, inputs, rec, ok := sb.cache.tryAlias(sb.state.key, aliasInputs)
	if ok {
		sb.hit(key, rec, createdBy, p, sb.cache.pos(sb.step)+"-alias", inputs)
	}
	return ok
}

// apply adds a step's result to the stage: its layer and history entry.
func (sb *stageBuilder) apply(rec *cache.Record, createdBy string) {
	if rec.Layer == nil {
		sb.img.historyAt(createdBy, true, rec.Created)
		return
	}
	l := rec.Layer.Blob
	sb.state.layers = append(sb.state.layers, l)
	sb.state.dirs = append(sb.state.dirs, sb.svc.store.LayerDir(l.DiffID))
	sb.img.historyAt(createdBy, false, rec.Created)
}

// stepCache returns the step cache as the steps of stage st use it.
func (r *run) stepCache(st *plan.Stage) *stepCache {
	c := &stepCache{
		index:        r.cache,
		used:         &r.used,
		store:        r.b.Store,
		sums:         r.sums,
		enabled:      !r.opts.NoCache,
		common:       commonInputs(string(r.opts.Compression), r.opts.CompressionLevel, r.epochString()),
		stage:        st.Index,
		dockerfileID: r.dockerfileID,
		stageName:    st.Display(),
	}
	if len(r.opts.CacheFrom) > 0 {
		c.imported = r.imported
	}
	for _, f := range r.opts.NoCacheFilter {
		if strings.EqualFold(f, st.Name) || f == strconv.Itoa(st.Index) {
			c.enabled = false
		}
	}
	return c
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
