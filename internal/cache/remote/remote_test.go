package remote

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

func openStore(t *testing.T) (*store.Store, *cache.Index) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ix, err := cache.Open(st.Path("cache"))
	if err != nil {
		t.Fatal(err)
	}
	return st, ix
}

// key is a cache key named by s.
func key(s string) cache.Key { return cache.NewKey("", cache.Input{Name: "test", Value: s}) }

// A cache export written to an OCI layout and read back offers its records
// to another store: a record without a layer is put in the index when
// looked up, one with a layer once Fetch brought its blob.
func TestExportImportRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _ := openStore(t)
	data := []byte("not really a tar, but a blob")
	d := digest.FromBytes(data)
	if _, _, err := src.WriteBlob(ctx, bytes.NewReader(data), d); err != nil {
		t.Fatal(err)
	}
	blob := layer.Blob{Digest: d, DiffID: digest.FromString("diff"), Size: int64(len(data)), MediaType: layer.Gzip.MediaType()}
	recs := []cache.Exported{
		{Key: key("with-layer"), Record: cache.Record{Layer: &cache.Layer{Blob: blob}}},
		{Key: key("empty"), Record: cache.Record{}},
		{Key: key("same-layer"), Record: cache.Record{Layer: &cache.Layer{Blob: blob}}},
	}
	img, n, err := Image(src, cache.Export{Records: recs})
	if err != nil || n != 1 {
		t.Fatalf("Image: %d layers, %v", n, err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := WriteLocal(dir, img); err != nil {
		t.Fatal(err)
	}
	if err := WriteLocal(dir, img); err != nil { // replaces the earlier one
		t.Fatal(err)
	}
	back, err := ReadLocal(dir)
	if err != nil {
		t.Fatal(err)
	}

	dst, ix := openStore(t)
	im := NewImported(ix)
	if n, err := im.Add(back); err != nil || n != 3 {
		t.Fatalf("Add: %d records, %v", n, err)
	}
	if _, ok := im.Lookup(key("missing")); ok {
		t.Error("Lookup found a key no source offers")
	}
	if rec, ok := im.Lookup(key("empty")); !ok || rec.Layer != nil {
		t.Errorf("Lookup(empty) = %+v, %v", rec, ok)
	}
	if _, ok := ix.Get(key("empty")); !ok {
		t.Error("a record without a layer is not in the index once looked up")
	}
	rec, ok := im.Lookup(key("with-layer"))
	if !ok || rec.Layer == nil || rec.Layer.Digest != d {
		t.Fatalf("Lookup(with-layer) = %+v, %v", rec, ok)
	}
	if _, ok := ix.Get(key("with-layer")); ok {
		t.Error("a record is in the index before its blob is here")
	}
	if err := im.Fetch(ctx, dst, d); err != nil {
		t.Fatal(err)
	}
	if !dst.HasBlob(d) {
		t.Error("Fetch did not bring the blob")
	}
	if _, ok := ix.Get(key("with-layer")); !ok {
		t.Error("the record is not in the index once its blob is here")
	}
	if _, ok := ix.Get(key("same-layer")); ok {
		t.Error("a record never looked up went into the index")
	}
	if err := im.Fetch(ctx, dst, digest.FromString("other")); err == nil || !strings.Contains(err.Error(), "neither in the store nor offered by --cache-from") {
		t.Errorf("Fetch of a blob nobody offers: %v", err)
	}
}

// An image with neither a cache config nor an inline cache label offers
// nothing; an image with the label offers its records.
func TestAddInline(t *testing.T) {
	t.Parallel()
	_, ix := openStore(t)
	im := NewImported(ix)
	if _, err := im.Add(empty.Image); err == nil || !strings.Contains(err.Error(), "neither a strata cache manifest") {
		t.Errorf("Add(an image without cache): %v", err)
	}
	lbl, _ := cache.Export{Records: []cache.Exported{{Key: key("k")}}}.Marshal()
	cfg, err := empty.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Config.Labels = map[string]string{cache.InlineLabel: string(lbl)}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := im.Add(img); err != nil || n != 1 {
		t.Fatalf("Add(inline): %d, %v", n, err)
	}
	if _, ok := im.Lookup(key("k")); !ok {
		t.Error("an inline record is not offered")
	}
	if _, err := ReadLocal(t.TempDir()); err == nil {
		t.Error("ReadLocal of a directory without a layout succeeded")
	}
}

// Select keeps every record in mode max; in mode min those whose layers
// are in the final image and the empty steps of the chain's stages.
// SetBlob names a blob in the records noted without one.
func TestUsed(t *testing.T) {
	t.Parallel()
	var u Used
	inFinal := layer.Blob{Digest: "sha256:f", DiffID: "sha256:fd"}
	lazy := &cache.Layer{Blob: layer.Blob{DiffID: "sha256:ld"}}
	u.Add(0, "", "final", cache.Record{Layer: &cache.Layer{Blob: inFinal}})
	u.Add(0, "", "final", cache.Record{Layer: &cache.Layer{Blob: inFinal}}) // noted twice, exported once
	u.Add(0, "", "chain-empty", cache.Record{})
	u.Add(1, "", "other-empty", cache.Record{})
	u.Add(1, "", "lazy", cache.Record{Layer: lazy})
	keys := func(recs []cache.Exported) []string {
		var out []string
		for _, e := range recs {
			out = append(out, string(e.Key))
		}
		sort.Strings(out)
		return out
	}
	final := []image.Layer{inFinal}
	chain := map[int]bool{0: true}
	if got := keys(u.Select("min", final, chain)); !reflect.DeepEqual(got, []string{"chain-empty", "final"}) {
		t.Errorf("min: %q", got)
	}
	if got := keys(u.Select("max", final, chain)); !reflect.DeepEqual(got, []string{"chain-empty", "final", "lazy", "other-empty"}) {
		t.Errorf("max: %q", got)
	}
	m := layer.Blob{Digest: "sha256:l", DiffID: "sha256:ld", Size: 3}
	changed := u.SetBlob(m)
	if len(changed) != 1 || changed[0].Key != "lazy" || changed[0].Record.Layer.Digest != m.Digest {
		t.Errorf("SetBlob changed %+v", changed)
	}
	if got := keys(u.Select("min", []image.Layer{m}, nil)); !reflect.DeepEqual(got, []string{"lazy"}) {
		t.Errorf("min after SetBlob: %q", got)
	}
	if again := u.SetBlob(m); len(again) != 0 {
		t.Errorf("SetBlob twice changed %+v", again)
	}
}
