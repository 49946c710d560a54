package cache

import (
	"sort"
	"time"
)

// Merge returns the union of the records of exps, one per key and layer:
// a step that is not reproducible, run by two builders at once, gives its
// key two layers, and both stay, as the records after it follow one or
// the other (an import picks the one more steps were built on). Of equal
// records the one used last is kept (then the one made last), so merging
// is the same in any order. Records come out sorted by key and layer, so
// equal inputs give equal bytes.
func Merge(exps ...Export) []Exported {
	type id struct {
		key   Key
		layer string
	}
	byID := map[id]Exported{}
	for _, e := range exps {
		for _, r := range e.Records {
			k := id{r.Key, layerDigest(r)}
			old, ok := byID[k]
			if !ok || Newer(r, old) {
				byID[k] = r
			}
		}
	}
	out := make([]Exported, 0, len(byID))
	for _, r := range byID {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		return layerDigest(out[i]) < layerDigest(out[j])
	})
	return out
}

// Newer reports whether a was used (else made) after b; of equal times,
// the one with the greater layer digest, so that the order is total.
func Newer(a, b Exported) bool {
	if !a.Used.Equal(b.Used) {
		return a.Used.After(b.Used)
	}
	if !a.Record.Created.Equal(b.Record.Created) {
		return a.Record.Created.After(b.Record.Created)
	}
	return layerDigest(a) > layerDigest(b)
}

func layerDigest(e Exported) string {
	if e.Record.Layer == nil {
		return ""
	}
	return string(e.Record.Layer.Digest)
}

// Bounds limit what a shared cache keeps (--cache-to ...,max-size=,max-age=).
type Bounds struct {
	MaxSize int64         // bytes of distinct layer blobs; 0: no bound
	MaxAge  time.Duration // since a record was last used; 0: no bound
}

// Bound returns the records of recs that b keeps at now: those used within
// MaxAge, then, newest use first, every record whose layer still fits in
// MaxSize (a layer shared by records counts once; a record with no layer
// always fits). The order of recs is kept.
func (b Bounds) Bound(recs []Exported, now time.Time) []Exported {
	if b.MaxSize <= 0 && b.MaxAge <= 0 {
		return recs
	}
	order := make([]int, 0, len(recs))
	for i, r := range recs {
		if b.MaxAge > 0 && now.Sub(used(r)) > b.MaxAge {
			continue
		}
		order = append(order, i)
	}
	sort.SliceStable(order, func(i, j int) bool { return used(recs[order[i]]).After(used(recs[order[j]])) })
	keep := make([]bool, len(recs))
	counted := map[string]bool{}
	var size int64
	for _, i := range order {
		l := recs[i].Record.Layer
		if l == nil || counted[string(l.Digest)] || b.MaxSize <= 0 {
			keep[i] = true
			continue
		}
		if size+l.Size > b.MaxSize {
			continue
		}
		size += l.Size
		counted[string(l.Digest)] = true
		keep[i] = true
	}
	out := recs[:0:0]
	for i, r := range recs {
		if keep[i] {
			out = append(out, r)
		}
	}
	return out
}

// used is when r was last used: Used, or for a record exported before
// strata noted uses, when it was made.
func used(r Exported) time.Time {
	if r.Used.IsZero() {
		return r.Record.Created
	}
	return r.Used
}

// Chains ranks records of one key by how many recorded steps follow
// them: the records of a step form a tree through the filesystems they
// leave (After), and of two layers recorded for one key (two builders ran
// a step that is not reproducible at once), the one more recorded steps
// were built on is the one to take: it is the one most builds went
// through, so the steps after it most likely hit.
type Chains struct {
	children map[Key][]Exported // by the filesystem a step starts from
	memo     map[Key]int
}

// NewChains indexes recs by their Parent.
func NewChains(recs []Exported) *Chains {
	c := &Chains{children: map[Key][]Exported{}, memo: map[Key]int{}}
	for _, r := range recs {
		if r.Parent != "" {
			c.children[r.Parent] = append(c.children[r.Parent], r)
		}
	}
	return c
}

// Weight is how many recorded steps follow r (0 for a record with no
// Parent, or none after it).
func (c *Chains) Weight(r Exported) int {
	if r.Parent == "" {
		return 0
	}
	return c.weight(After(r.Parent, &r.Record))
}

func (c *Chains) weight(state Key) int {
	if w, ok := c.memo[state]; ok {
		return w // known, or being counted: a step that changed nothing leads back here
	}
	c.memo[state] = 0
	n := 0
	for _, ch := range c.children[state] {
		if next := After(state, &ch.Record); next != state {
			n += 1 + c.weight(next)
		} else {
			n++
		}
	}
	c.memo[state] = n
	return n
}
