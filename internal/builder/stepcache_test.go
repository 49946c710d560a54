package builder

import (
	"testing"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/cache/remote"
	"github.com/strata-build/strata/internal/store"
)

func newStepCache(t *testing.T) *stepCache {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ix, err := cache.Open(st.Path("cache"))
	if err != nil {
		t.Fatal(err)
	}
	return &stepCache{index: ix, used: &remote.Used{}, store: st, enabled: true,
		common: commonInputs("gzip", 0, ""), dockerfileID: "/Dockerfile", stageName: "stage-0"}
}

// A step recorded under its key is found again (and noted for export);
// its alias, recorded with it, stands for that key; misses say why.
func TestStepCache(t *testing.T) {
	t.Parallel()
	c := newStepCache(t)
	parent := cache.NewKey("", cache.Input{Name: "base", Value: "scratch"})
	in := []cache.Input{{Name: "instruction", Value: "WORKDIR /a"}}
	key, all := c.key(parent, in)
	if len(all) != len(c.common)+1 || all[0].Name != "differ" {
		t.Fatalf("inputs %v", all)
	}
	pos := c.pos(2)
	if _, ok := c.find(key); ok {
		t.Fatal("found a step never recorded")
	}
	if got := c.missReason(pos, all); got != "no earlier build of this step" {
		t.Errorf("miss reason %q", got)
	}
	// a COPY --from=stage: missed by its cheap key, then made
	aliasIn := []cache.Input{{Name: "from", Value: "stage x"}}
	if _, _, _, ok := c.tryAlias(parent, aliasIn); ok {
		t.Fatal("alias hit in an empty cache")
	}
	if err := c.put(parent, key, cache.Record{}, pos, all); err != nil {
		t.Fatal(err)
	}
	c.endStep()
	if rec, ok := c.find(key); !ok || rec.Layer != nil {
		t.Fatalf("find after put: %v %v", rec, ok)
	}
	c.hit(parent, key, &cache.Record{}, pos, all)
	aliasKey, aliasAll, rec, ok := c.tryAlias(parent, aliasIn)
	if !ok || rec.Layer != nil {
		t.Fatalf("alias lookup: %+v %v", rec, ok)
	}
	c.hit(parent, aliasKey, rec, pos+"-alias", aliasAll)
	if n := len(c.used.Select("max", nil, nil)); n != 2 {
		t.Errorf("%d records noted for export, want the step and its alias", n)
	}
	// the same place with another instruction: the reason names the input
	_, changed := c.key(parent, []cache.Input{{Name: "instruction", Value: "WORKDIR /b"}})
	if got := c.missReason(pos, changed); got != "changed: instruction" {
		t.Errorf("miss reason %q", got)
	}
	if got := c.missReason(pos, all); got != "an earlier step or the base image changed" {
		t.Errorf("miss reason %q", got)
	}
	// off (--no-cache): nothing is found, a prefix always speculates
	c.enabled = false
	if _, ok := c.find(key); ok {
		t.Error("found a record with the cache off")
	}
	if _, _, _, ok := c.tryAlias(parent, aliasIn); ok {
		t.Error("alias hit with the cache off")
	}
	if _, spec := c.prefix(parent, in); !spec {
		t.Error("no speculation with the cache off")
	}
}

// A COPY from the context speculates (copies before its key is known)
// until a step with its prefix was recorded, or when --cache-from may
// have a record.
func TestStepCachePrefix(t *testing.T) {
	t.Parallel()
	c := newStepCache(t)
	in := []cache.Input{{Name: "prefix", Value: "copy from the build context"}}
	prefix, spec := c.prefix("", in)
	if !spec || prefix == "" {
		t.Fatalf("prefix %q, speculate %v", prefix, spec)
	}
	c.markPrefix(prefix)
	if _, spec := c.prefix("", in); spec {
		t.Error("speculates though a step with the prefix was recorded")
	}
	c.imported = remote.NewImported(c.index)
	if _, spec := c.prefix("", []cache.Input{{Name: "other"}}); spec {
		t.Error("speculates though --cache-from may have a record")
	}
}
