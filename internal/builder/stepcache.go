package builder

import (
	"fmt"
	"strings"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/cache/remote"
	"github.com/strata-build/strata/internal/store"
)

// layerRules names the version of the rules that turn a step's changes into
// its layer (which copied-up entries count as changes: layer.PruneUnchanged).
// A change of them that gives another layer for the same step bumps it, so
// that layers cached under the old rules are not mixed with new ones.
const layerRules = "2"

// stepCache is the step cache as the steps of one stage use it: it makes
// their keys, finds their records (in the local index, else among the
// --cache-from records), records the steps made, notes every record used
// or made for --cache-to and says why a step missed.
type stepCache struct {
	index    *cache.Index
	imported *remote.Imported // nil: no --cache-from
	used     *remote.Used
	store    *store.Store   // where a record's layer must still be
	sums     *buildctx.Sums // the context's changed files, for miss reasons
	enabled  bool           // false with --no-cache, or the stage in --no-cache-filter
	common   []cache.Input  // the inputs of every step that makes a layer
	stage    int            // the stage's index, for --cache-to
	// dockerfileID and stageName place a step for miss explanations
	dockerfileID, stageName string
	// alias is the cheap key of the current step (see tryAlias), "" if none
	alias cache.Key
	// fromImport tells that the record the last lookup found came from
	// the import, not the local index (see alternatives)
	fromImport bool
}

// commonInputs are the cache key inputs every step that makes a layer has:
// the layer rules, the compression and SOURCE_DATE_EPOCH.
func commonInputs(compression string, level int, epoch string) []cache.Input {
	return []cache.Input{
		{Name: "differ", Value: layerRules},
		{Name: "compression", Value: fmt.Sprintf("%s level %d", compression, level)},
		{Name: "epoch", Value: epoch},
	}
}

// pos is the place of step n in the Dockerfile, for miss explanations.
func (c *stepCache) pos(n int) string { return cache.Position(c.dockerfileID, c.stageName, n) }

// key returns the key of a step on parent with inputs, and all its inputs.
func (c *stepCache) key(parent cache.Key, inputs []cache.Input) (cache.Key, []cache.Input) {
	all := append(append([]cache.Input(nil), c.common...), inputs...)
	return cache.NewKey(parent, all...), all
}

// find returns a usable record of key, when the cache is on. With an alias
// pending (tryAlias), the alias is recorded to stand for key.
func (c *stepCache) find(key cache.Key) (*cache.Record, bool) {
	if !c.enabled {
		return nil, false
	}
	rec, ok := c.lookup(key)
	if ok && c.alias != "" {
		a := *rec
		a.Next = key
		c.index.Put(c.alias, &a)
	}
	return rec, ok
}

// lookup finds a usable record for key: local, else from --cache-from.
func (c *stepCache) lookup(key cache.Key) (*cache.Record, bool) {
	rec, ok := c.index.Get(key)
	if ok && !c.available(rec) {
		ok = false
	}
	c.fromImport = false
	if !ok && c.imported != nil {
		rec, ok = c.imported.Lookup(key)
		c.fromImport = ok
	}
	return rec, ok
}

// alternatives returns the other layers the import offers for the step
// that hit rec under key, when rec came from the import (see
// retakePoint): under key, and for an alias record under its content key
// (rec.Next) too, each with the key it is offered under.
func (c *stepCache) alternatives(key cache.Key, rec *cache.Record) []offered {
	if c.imported == nil || !c.fromImport {
		return nil
	}
	var out []offered
	seen := map[string]bool{string(rec.Layer.Digest): true}
	for _, k := range []cache.Key{key, rec.Next} {
		if k == "" {
			continue
		}
		for _, e := range c.imported.Others(k, rec.Layer.Digest) {
			if l := e.Record.Layer; l != nil && !seen[string(l.Digest)] {
				seen[string(l.Digest)] = true
				out = append(out, offered{key: k, exp: e})
			}
		}
	}
	return out
}

// offered is a record the import offers under key.
type offered struct {
	key cache.Key
	exp cache.Exported
}

// take makes alt, offered for the step hit under key, the record the build
// used (see retakePoint).
func (c *stepCache) take(key cache.Key, alt offered) {
	c.imported.Take(alt.key, alt.exp)
	rec := alt.exp.Record
	if alt.key != key {
		rec.Next = alt.key
	}
	c.used.Replace(c.stage, key, rec)
}

// available reports whether a cache record's layer is still in the store:
// as a blob (it is unpacked when needed), or for a layer recorded without
// one, as its unpacked directory.
func (c *stepCache) available(rec *cache.Record) bool {
	switch {
	case rec.Layer == nil:
		return true
	case rec.Layer.Lazy():
		return c.store.HasLayer(rec.Layer.DiffID)
	}
	return c.store.HasBlob(rec.Layer.Digest)
}

// hit notes the use of rec, found for key (a step on the filesystem
// parent) at pos.
func (c *stepCache) hit(parent, key cache.Key, rec *cache.Record, pos string, inputs []cache.Input) {
	c.index.Touch(key)
	c.used.Add(c.stage, parent, key, *rec)
	c.index.SetLast(pos, append(inputs, cache.Input{Name: "parent", Value: string(key)}))
}

// put records rec, a step on the filesystem parent made at pos, under key
// (and the pending alias).
func (c *stepCache) put(parent, key cache.Key, rec cache.Record, pos string, inputs []cache.Input) error {
	if err := c.index.Put(key, &rec); err != nil {
		return err
	}
	c.used.Add(c.stage, parent, key, rec)
	if c.alias != "" {
		// also findable by the cheap key (see tryAlias)
		a := rec
		a.Next = key
		if err := c.index.Put(c.alias, &a); err == nil {
			c.used.Add(c.stage, parent, c.alias, a)
		}
	}
	c.index.SetLast(pos, append(inputs, cache.Input{Name: "parent", Value: string(key)}))
	return nil
}

// tryAlias looks a step on parent up by a cheap key (aliasInputs need no
// file content, e.g. a COPY --from=stage keyed by the source stage's key)
// and returns its record when found. Otherwise the alias is kept, and the
// step's normal (content) key, once known, is recorded under it too (find
// and put), until endStep.
func (c *stepCache) tryAlias(parent cache.Key, aliasInputs []cache.Input) (cache.Key, []cache.Input, *cache.Record, bool) {
	c.alias = ""
	if !c.enabled {
		return "", nil, nil, false
	}
	key, inputs := c.key(parent, aliasInputs)
	if rec, ok := c.lookup(key); ok {
		return key, inputs, rec, true
	}
	c.alias = key
	return "", nil, nil, false
}

// endStep forgets the alias of the step that ended.
func (c *stepCache) endStep() { c.alias = "" }

// prefix returns the key prefix of a step on parent (its key without the
// content of its sources: Index.MarkPrefix), and whether the step may run
// before its key is known: the cache cannot hold a record for it (no mark
// for the prefix and no --cache-from to ask, or the cache is off).
func (c *stepCache) prefix(parent cache.Key, inputs []cache.Input) (cache.Key, bool) {
	prefix, _ := c.key(parent, inputs)
	if !c.enabled {
		return prefix, true
	}
	return prefix, c.imported == nil && !c.index.HasPrefix(prefix)
}

// markPrefix notes that a step with this prefix was recorded.
func (c *stepCache) markPrefix(prefix cache.Key) { c.index.MarkPrefix(prefix) }

// previous returns the record of the latest build of the step at pos
// (whatever its key), when the index still has it: what a step that
// misses can take unchanged work from (see run.reuseOf).
func (c *stepCache) previous(pos string) (*cache.Record, bool) {
	last, ok := c.index.Last(pos)
	if !ok {
		return nil, false
	}
	for _, in := range last {
		if in.Name == "parent" {
			return c.index.Get(cache.Key(in.Value))
		}
	}
	return nil, false
}

// missReason says which inputs of the step at pos changed since the
// previous build at the same place (printed with --debug-cache, kept for
// the report).
func (c *stepCache) missReason(pos string, inputs []cache.Input) string {
	old, ok := c.index.Last(pos)
	if !ok {
		return "no earlier build of this step"
	}
	var reasons []string
	for _, ch := range cache.Changed(old, append(inputs, cache.Input{Name: "parent", Value: "?"})) {
		if ch != "parent" {
			reasons = append(reasons, ch)
		}
	}
	if len(reasons) == 0 {
		return "an earlier step or the base image changed"
	}
	msg := "changed: " + strings.Join(reasons, ", ")
	if c.sums == nil {
		return msg
	}
	if files := c.sums.Changed(); len(files) > 0 && strings.Contains(msg, "source ") && !strings.Contains(msg, "from") {
		if len(files) > 5 {
			files = append(files[:5], fmt.Sprintf("and %d more", len(files)-5))
		}
		msg += " (changed files: " + strings.Join(files, ", ") + ")"
	}
	return msg
}
