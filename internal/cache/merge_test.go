package cache

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/layer"
)

func rec(key string, used time.Time, d string, size int64) Exported {
	e := Exported{Key: Key(key), Used: used, Record: Record{Created: used}}
	if d != "" {
		e.Record.Layer = &Layer{Blob: layer.Blob{Digest: digest.FromString(d), DiffID: digest.FromString(d + "u"), Size: size}}
	}
	return e
}

// Merge keeps one record per key and layer, the one used last, in any
// order: two layers for one key both stay.
func TestMergeKeepsEachLayerOnce(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := Export{Records: []Exported{rec("k1", t0, "old", 1), rec("k2", t0, "x", 1)}}
	b := Export{Records: []Exported{rec("k1", t0.Add(time.Hour), "new", 1), rec("k2", t0.Add(time.Hour), "x", 1), rec("k3", t0, "", 0)}}
	for _, m := range [][]Exported{Merge(a, b), Merge(b, a)} {
		if len(m) != 4 || m[0].Key != "k1" || m[1].Key != "k1" || m[2].Key != "k2" || !m[2].Used.Equal(t0.Add(time.Hour)) {
			t.Fatalf("merge: %+v", m)
		}
	}
}

// Of two layers recorded for one key, Chains ranks first the one more
// recorded steps follow.
func TestChainsWeight(t *testing.T) {
	t0 := time.Unix(1000, 0)
	withParent := func(e Exported, parent Key) Exported { e.Parent = parent; return e }
	a := withParent(rec("k", t0, "a", 1), "p")
	b := withParent(rec("k", t0, "b", 1), "p")
	sb := After("p", &b.Record)
	next := withParent(rec("k2", t0, "n", 1), sb)
	sn := After(sb, &next.Record)
	empty := withParent(rec("k3", t0, "", 0), sn) // changes nothing
	last := withParent(rec("k4", t0, "l", 1), sn)
	other := withParent(rec("k5", t0, "o", 1), sn)
	c := NewChains([]Exported{a, b, next, empty, last, other})
	if wa, wb := c.Weight(a), c.Weight(b); wa != 0 || wb != 4 {
		t.Errorf("weights %d (no step after it) and %d, want 0 and 4", wa, wb)
	}
	if w := c.Weight(rec("x", t0, "x", 1)); w != 0 {
		t.Errorf("a record without parent has weight %d", w)
	}
}

func TestBounds(t *testing.T) {
	now := time.Unix(100000, 0)
	recs := []Exported{
		rec("old", now.Add(-72*time.Hour), "a", 10),
		rec("mid", now.Add(-2*time.Hour), "b", 60),
		rec("new", now.Add(-time.Hour), "c", 50),
		rec("shares", now.Add(-3*time.Hour), "c", 50), // the layer of "new": counted once
		rec("empty", now.Add(-5*time.Hour), "", 0),
	}
	keys := func(rs []Exported) (s []string) {
		for _, r := range rs {
			s = append(s, string(r.Key))
		}
		return s
	}
	if got := keys((Bounds{MaxAge: 24 * time.Hour}).Bound(recs, now)); len(got) != 4 || got[0] != "mid" {
		t.Errorf("max-age 24h kept %v", got)
	}
	// 100 bytes: c (50, newest) fits, b (60) does not, a (10) does.
	if got := keys((Bounds{MaxSize: 100}).Bound(recs, now)); len(got) != 4 || got[0] != "old" || got[1] != "new" {
		t.Errorf("max-size 100 kept %v", got)
	}
	if got := (Bounds{}).Bound(recs, now); len(got) != len(recs) {
		t.Errorf("no bounds dropped records")
	}
}
