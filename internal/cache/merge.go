package cache

import (
	"sort"
	"time"
)

// Merge returns the union of the records of exps, one per key. Where two
// exports hold a key, the record used last wins (then the one made last,
// then the one of the later export), so merging is the same in any order
// but for records of one key that differ: a step that is not reproducible
// gives each builder another layer, and one of them is kept. Records come
// out sorted by key, so equal inputs give equal bytes.
func Merge(exps ...Export) []Exported {
	byKey := map[Key]Exported{}
	for _, e := range exps {
		for _, r := range e.Records {
			old, ok := byKey[r.Key]
			if !ok || newer(r, old) {
				byKey[r.Key] = r
			}
		}
	}
	out := make([]Exported, 0, len(byKey))
	for _, r := range byKey {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// newer reports whether a should replace b, records of one key.
func newer(a, b Exported) bool {
	if !a.Used.Equal(b.Used) {
		return a.Used.After(b.Used)
	}
	if !a.Record.Created.Equal(b.Record.Created) {
		return a.Record.Created.After(b.Record.Created)
	}
	da, db := layerDigest(a), layerDigest(b)
	return da > db
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
