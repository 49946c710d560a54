package builder

import (
	"github.com/strata-build/strata/internal/cache"
)

// retakePoint is the last step of a stage that hit an imported record
// while other layers were recorded for it too (under its key, or for a
// step found by an alias, under its content key): two builders ran a
// step that is not reproducible at once (other file times), and the
// steps after it were recorded on one layer or the other. If the next
// step misses on the layer taken, it is looked up on each other layer,
// and on a hit that layer replaces the one taken. Nothing has read the
// step's files yet: the next step is the first to.
type retakePoint struct {
	parent cache.Key // the filesystem the step started from
	key    cache.Key // its cache key
	taken  cache.Key // the filesystem it left (cache.After)
	layer  int       // its index in the stage's layers
	hist   int       // its index in the image's history
	alts   []offered
}

// noteRetake remembers the step just applied from rec (hit under key, on
// parent) when the import offers other layers for key; any other step
// forgets it.
func (sb *stageBuilder) noteRetake(parent, key cache.Key, rec *cache.Record) {
	sb.retake = nil
	if rec.Layer == nil {
		return
	}
	alts := sb.cache.alternatives(key, rec)
	if len(alts) == 0 {
		return
	}
	sb.retake = &retakePoint{parent: parent, key: key, taken: sb.state.key,
		layer: len(sb.state.layers) - 1, hist: len(sb.img.cfg.History) - 1, alts: alts}
}

// retakeHit looks the step with inputs (which missed) up on each other
// layer of the previous step (see retakePoint); on a hit it puts that
// layer in place and returns the step's key and record there.
func (sb *stageBuilder) retakeHit(inputs []cache.Input) (cache.Key, *cache.Record, bool) {
	rp := sb.retake
	if rp == nil || sb.state.key != rp.taken {
		return "", nil, false
	}
	for _, alt := range rp.alts {
		state := cache.After(rp.parent, &alt.exp.Record)
		key := cache.NewKey(state, inputs...)
		rec, ok := sb.cache.find(key)
		if !ok {
			continue
		}
		sb.cache.take(rp.key, alt)
		l := alt.exp.Record.Layer.Blob
		sb.state.layers[rp.layer] = l
		sb.state.dirs[rp.layer] = sb.svc.store.LayerDir(l.DiffID)
		if h := &sb.img.cfg.History[rp.hist]; !alt.exp.Record.Created.IsZero() {
			h.Created.Time = alt.exp.Record.Created
		}
		sb.state.key = state
		return key, rec, true
	}
	return "", nil, false
}

// retakeAlternatives returns the filesystems the stage would have with
// each other layer of its last step, when that step may still take one
// (the stage ends on it): a step of another stage that copies from this
// one was maybe recorded on one of them (copyShortcut).
func (sb *stageBuilder) retakeAlternatives() []cache.Key {
	rp := sb.retake
	if rp == nil || sb.state.key != rp.taken {
		return nil
	}
	out := make([]cache.Key, 0, len(rp.alts))
	for _, alt := range rp.alts {
		out = append(out, cache.After(rp.parent, &alt.exp.Record))
	}
	return out
}
