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
	b := sb.r.b
	pos := cache.Position(sb.r.dockerfileID, sb.st.Display(), sb.step)
	defer func() { sb.alias = "" }()
	var key cache.Key
	if late == nil {
		inputs = append(sb.commonInputs(), inputs...)
		key = cache.NewKey(sb.state.key, inputs...)
		if sb.tryCached(ctx, p, key, createdBy, pos, inputs) {
			return nil
		}
	}
	var parents []string
	if !scratch {
		var err error
		if parents, err = sb.r.ensureDirs(ctx, sb.state); err != nil {
			return err
		}
	}
	snap, err := b.snapshots().Prepare(ctx, parents)
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
		inputs = append(sb.commonInputs(), in...)
		key = cache.NewKey(sb.state.key, inputs...)
		if sb.tryCached(ctx, p, key, createdBy, pos, inputs) {
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
	rec := &cache.Record{Created: sb.r.now()}
	if !empty {
		l, err := sb.commit(ctx, diff)
		if err != nil {
			return err
		}
		rec.Layer = l
	}
	if err := sb.r.cache.Put(key, rec); err != nil {
		return err
	}
	sb.r.used.Add(sb.st.Index, key, *rec)
	if sb.alias != "" {
		// also findable by the cheap key (see tryAlias)
		a := *rec
		a.Next = key
		if err := sb.r.cache.Put(sb.alias, &a); err == nil {
			sb.r.used.Add(sb.st.Index, sb.alias, a)
		}
	}
	sb.apply(rec, createdBy)
	sb.state.key = key
	sb.r.cache.SetLast(pos, append(inputs, cache.Input{Name: "parent", Value: string(key)}))
	return nil
}

// tryCached applies the record of key when the cache has a usable one and
// reports whether it did; on a miss it gives the step its reason.
func (sb *stageBuilder) tryCached(ctx context.Context, p *progress.Step, key cache.Key, createdBy, pos string, inputs []cache.Input) bool {
	if !sb.useCache() {
		return false
	}
	if rec, ok := sb.lookup(ctx, key); ok {
		if sb.alias != "" {
			a := *rec
			a.Next = key
			sb.r.cache.Put(sb.alias, &a)
		}
		sb.hit(key, rec, createdBy, p, pos, inputs)
		return true
	}
	if reason := sb.missReason(pos, inputs); p != nil {
		p.SetReason(reason)
		if sb.r.opts.DebugCache {
			sb.r.opts.Progress.Logf("cache miss [%s %d/%d]: %s", sb.st.Display(), sb.step, sb.total, reason)
		}
	}
	return false
}

// layerRules names the version of the rules that turn a step's changes into
// its layer (which copied-up entries count as changes: layer.PruneUnchanged).
// A change of them that gives another layer for the same step bumps it, so
// that layers cached under the old rules are not mixed with new ones.
const layerRules = "2"

// commonInputs are the cache key inputs every step that makes a layer has.
func (sb *stageBuilder) commonInputs() []cache.Input {
	return []cache.Input{
		{Name: "differ", Value: layerRules},
		{Name: "compression", Value: fmt.Sprintf("%s level %d", sb.r.opts.Compression, sb.r.opts.CompressionLevel)},
		{Name: "epoch", Value: sb.r.epochString()},
	}
}

// lookup finds a usable record for key: local, else from --cache-from.
func (sb *stageBuilder) lookup(ctx context.Context, key cache.Key) (*cache.Record, bool) {
	rec, ok := sb.r.cache.Get(key)
	if ok && !sb.r.available(rec) {
		ok = false
	}
	if !ok {
		rec, ok = sb.r.imported.Lookup(key)
	}
	return rec, ok
}

// hit applies a cache hit for key.
func (sb *stageBuilder) hit(key cache.Key, rec *cache.Record, createdBy string, p *progress.Step, pos string, inputs []cache.Input) {
	sb.r.cache.Touch(key)
	sb.r.used.Add(sb.st.Index, key, *rec)
	sb.apply(rec, createdBy)
	if rec.Next != "" {
		key = rec.Next
	}
	sb.state.key = key
	sb.r.cache.SetLast(pos, append(inputs, cache.Input{Name: "parent", Value: string(key)}))
	if p != nil {
		p.MarkCached()
	}
}

// tryAlias looks a step up by a cheap key (aliasInputs need no file
// content, e.g. a COPY --from=stage keyed by the source stage's key): a
// hit applies it and returns true. Otherwise the alias is remembered, and
// the step's normal (content) key, once known, is recorded under it too.
func (sb *stageBuilder) tryAlias(ctx context.Context, p *progress.Step, createdBy string, aliasInputs []cache.Input) bool {
	sb.alias = ""
	if !sb.useCache() {
		return false
	}
	inputs := append(sb.commonInputs(), aliasInputs...)
	key := cache.NewKey(sb.state.key, inputs...)
	if rec, ok := sb.lookup(ctx, key); ok {
		sb.hit(key, rec, createdBy, p, cache.Position(sb.r.dockerfileID, sb.st.Display(), sb.step)+"-alias", inputs)
		return true
	}
	sb.alias = key
	return false
}

// apply adds a step's result to the stage: its layer and history entry.
func (sb *stageBuilder) apply(rec *cache.Record, createdBy string) {
	if rec.Layer == nil {
		sb.img.historyAt(createdBy, true, rec.Created)
		return
	}
	l := rec.Layer.Blob
	sb.state.layers = append(sb.state.layers, l)
	sb.state.dirs = append(sb.state.dirs, sb.r.b.Store.LayerDir(l.DiffID))
	sb.img.historyAt(createdBy, false, rec.Created)
}

// available reports whether a cache record's layer is still in the store:
// as a blob (it is unpacked when needed), or for a layer recorded without
// one, as its unpacked directory.
func (r *run) available(rec *cache.Record) bool {
	switch {
	case rec.Layer == nil:
		return true
	case rec.Layer.Lazy():
		return r.b.Store.HasLayer(rec.Layer.DiffID)
	}
	return r.b.Store.HasBlob(rec.Layer.Digest)
}

// useCache reports whether this stage may reuse cached steps.
func (sb *stageBuilder) useCache() bool {
	o := sb.r.opts
	if o.NoCache {
		return false
	}
	for _, f := range o.NoCacheFilter {
		if strings.EqualFold(f, sb.st.Name) || f == strconv.Itoa(sb.st.Index) {
			return false
		}
	}
	return true
}

// missReason says which inputs of a step changed since the previous build
// at the same place (printed with --debug-cache, kept for the report).
func (sb *stageBuilder) missReason(pos string, inputs []cache.Input) string {
	old, ok := sb.r.cache.Last(pos)
	if !ok {
		return "no earlier build of this step"
	}
	var reasons []string
	for _, c := range cache.Changed(old, append(inputs, cache.Input{Name: "parent", Value: "?"})) {
		if c != "parent" {
			reasons = append(reasons, c)
		}
	}
	if len(reasons) == 0 {
		return "an earlier step or the base image changed"
	}
	msg := "changed: " + strings.Join(reasons, ", ")
	if files := sb.r.sums.Changed(); len(files) > 0 && strings.Contains(msg, "source ") && !strings.Contains(msg, "from") {
		if len(files) > 5 {
			files = append(files[:5], fmt.Sprintf("and %d more", len(files)-5))
		}
		msg += " (changed files: " + strings.Join(files, ", ") + ")"
	}
	return msg
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
