package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
)

// CacheSpec is one --cache-to or --cache-from value.
type CacheSpec struct {
	Type string // registry, local or inline
	Ref  string // type=registry
	Dir  string // type=local: dest= (export) or src= (import)
	Mode string // export: min (the final image's layers) or max (every stage)
}

// ParseCacheSpec parses "type=registry,ref=R,mode=max", "type=local,dest=D",
// "type=local,src=D", "type=inline" or a bare reference (registry).
func ParseCacheSpec(s string) (CacheSpec, error) {
	if !strings.Contains(s, "=") {
		return CacheSpec{Type: "registry", Ref: s, Mode: "min"}, nil
	}
	c := CacheSpec{Mode: "min"}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.TrimSpace(k) {
		case "type":
			c.Type = v
		case "ref":
			c.Ref = v
		case "dest", "src":
			c.Dir = v
		case "mode":
			if v != "min" && v != "max" {
				return c, fmt.Errorf("cache %q: mode must be min or max", s)
			}
			c.Mode = v
		case "oci-mediatypes", "compression", "image-manifest", "ignore-error":
			// accepted for buildx compatibility; strata always writes OCI
		default:
			return c, fmt.Errorf("cache %q: unknown key %q", s, k)
		}
	}
	switch c.Type {
	case "registry":
		if c.Ref == "" {
			return c, fmt.Errorf("cache %q: type=registry needs ref=", s)
		}
	case "local":
		if c.Dir == "" {
			return c, fmt.Errorf("cache %q: type=local needs dest= or src=", s)
		}
	case "inline":
	default:
		return c, fmt.Errorf("cache %q: type must be registry, local or inline", s)
	}
	return c, nil
}

// remoteRecord is a cache record offered by --cache-from, with the way to
// fetch its layer blob.
type remoteRecord struct {
	rec   cache.Record
	fetch func(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
}

// importCaches reads the --cache-from sources into r.remote.
func (r *run) importCaches(ctx context.Context) error {
	for _, spec := range r.opts.CacheFrom {
		var img v1.Image
		var err error
		switch spec.Type {
		case "registry":
			d, gerr := r.b.Registry.Get(ctx, spec.Ref)
			if gerr != nil {
				r.opts.Progress.Logf("warning: --cache-from %s: %v", spec.Ref, gerr)
				continue
			}
			img, err = d.Image()
		case "local":
			img, err = localCacheImage(spec.Dir)
		default:
			return fmt.Errorf("--cache-from type=%s cannot be imported", spec.Type)
		}
		if err != nil {
			r.opts.Progress.Logf("warning: --cache-from %s%s: %v", spec.Ref, spec.Dir, err)
			continue
		}
		n, err := r.addRemote(img)
		if err != nil {
			r.opts.Progress.Logf("warning: --cache-from %s%s: %v", spec.Ref, spec.Dir, err)
			continue
		}
		r.opts.Progress.Logf("importing cache from %s%s: %d records", spec.Ref, spec.Dir, n)
	}
	return nil
}

// addRemote registers the records of a cache manifest, or of an image
// carrying inline cache.
func (r *run) addRemote(img v1.Image) (int, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return 0, err
	}
	var meta []byte
	if string(m.Config.MediaType) == cache.ConfigMediaType {
		meta = raw
	} else {
		var cfg v1.ConfigFile
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return 0, err
		}
		lbl, ok := cfg.Config.Labels[cache.InlineLabel]
		if !ok {
			return 0, errors.New("neither a strata cache manifest nor an image with inline cache")
		}
		meta = []byte(lbl)
	}
	exp, err := cache.ParseExport(meta)
	if err != nil {
		return 0, err
	}
	fetch := func(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
		h, err := v1.NewHash(d.String())
		if err != nil {
			return nil, err
		}
		l, err := img.LayerByDigest(h)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.remote == nil {
		r.remote = map[cache.Key]remoteRecord{}
	}
	for _, e := range exp.Records {
		r.remote[e.Key] = remoteRecord{rec: e.Record, fetch: fetch}
	}
	return len(exp.Records), nil
}

// fromRemote returns the record of key from a --cache-from source. Its
// layer is not fetched now: ensureDirs fetches and unpacks it when a later
// step needs the stage's files, and the end of the build fetches the final
// image's layers; an intermediate layer nobody needs is never downloaded.
func (r *run) fromRemote(ctx context.Context, key cache.Key) (*cache.Record, bool) {
	r.mu.Lock()
	rr, ok := r.remote[key]
	if ok && rr.rec.Layer != nil {
		if r.fetchers == nil {
			r.fetchers = map[digest.Digest]func(context.Context, digest.Digest) (io.ReadCloser, error){}
		}
		r.fetchers[rr.rec.Layer.Digest] = rr.fetch
	}
	r.mu.Unlock()
	if !ok {
		return nil, false
	}
	rec := rr.rec
	if rec.Layer == nil {
		r.cache.Put(key, &rec)
	} else {
		// recorded locally once its blob is here (ensureBlob), so the local
		// cache never points at a missing blob
		r.mu.Lock()
		if r.pendingKeys == nil {
			r.pendingKeys = map[digest.Digest][]cache.Exported{}
		}
		d := rec.Layer.Digest
		r.pendingKeys[d] = append(r.pendingKeys[d], cache.Exported{Key: key, Record: rec})
		r.mu.Unlock()
	}
	return &rec, true
}

// ensureBlob makes sure the layer blob d is in the store, fetching it from
// the --cache-from source that offered it.
func (r *run) ensureBlob(ctx context.Context, d digest.Digest) error {
	if r.b.Store.HasBlob(d) {
		return nil
	}
	r.mu.Lock()
	fetch := r.fetchers[d]
	r.mu.Unlock()
	if fetch == nil {
		return fmt.Errorf("layer %s is neither in the store nor offered by --cache-from", d)
	}
	rc, err := fetch(ctx, d)
	if err != nil {
		return fmt.Errorf("fetch cache layer %s: %w", d, err)
	}
	defer rc.Close()
	if _, _, err := r.b.Store.WriteBlob(ctx, rc, d); err != nil {
		return fmt.Errorf("fetch cache layer %s: %w", d, err)
	}
	r.mu.Lock()
	recs := r.pendingKeys[d]
	delete(r.pendingKeys, d)
	r.mu.Unlock()
	for _, e := range recs {
		rec := e.Record
		r.cache.Put(e.Key, &rec)
	}
	return nil
}

// ensureLayer makes sure layer l is unpacked (fetching its blob if needed).
func (r *run) ensureLayer(ctx context.Context, l image.Layer) error {
	if r.b.Store.HasLayer(l.DiffID) {
		return nil
	}
	if l.Digest == "" {
		return fmt.Errorf("layer %s has no blob and its unpacked directory is gone", l.DiffID)
	}
	if err := r.ensureBlob(ctx, l.Digest); err != nil {
		return err
	}
	_, err := r.b.Store.EnsureLayer(ctx, l.DiffID, l.Digest, func(ctx context.Context, dir string, blob *os.File) (digest.Digest, error) {
		return layer.Apply(ctx, dir, blob, r.b.applyOptions())
	})
	return err
}

// usedRecord notes a record a stage used or made, for --cache-to.
func (r *run) usedRecord(stage int, key cache.Key, rec cache.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.used == nil {
		r.used = map[int][]cache.Exported{}
	}
	r.used[stage] = append(r.used[stage], cache.Exported{Key: key, Record: rec})
}

// exportRecords returns the records to export: mode max all stages', mode
// min those whose layers are in the final image (and its empty steps).
func (r *run) exportRecords(mode string, final []image.Layer) []cache.Exported {
	inFinal := map[digest.Digest]bool{}
	for _, l := range final {
		inFinal[l.Digest] = true
	}
	chain := map[int]bool{}
	for i := r.plan.Target; i >= 0; i = r.plan.All[i].BaseStage {
		chain[i] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []cache.Exported
	seen := map[cache.Key]bool{}
	for stage, recs := range r.used {
		for _, e := range recs {
			if seen[e.Key] {
				continue
			}
			keep := mode == "max"
			if e.Record.Layer != nil && inFinal[e.Record.Layer.Digest] {
				keep = true
			}
			if e.Record.Layer == nil && chain[stage] {
				keep = true
			}
			if keep {
				seen[e.Key] = true
				out = append(out, e)
			}
		}
	}
	return out
}

// cacheImage is a cache export as an OCI image manifest: the config is the
// record list, the layers the records' blobs.
type cacheImage struct {
	r      *run
	config []byte
	layers []image.Layer
}

func (c *cacheImage) RawConfigFile() ([]byte, error)      { return c.config, nil }
func (c *cacheImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (c *cacheImage) RawManifest() ([]byte, error) {
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: cache.ConfigMediaType, Digest: digest.FromBytes(c.config), Size: int64(len(c.config))},
		Layers:    []ocispec.Descriptor{},
	}
	m.SchemaVersion = 2
	for _, l := range c.layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	return json.Marshal(m)
}
func (c *cacheImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range c.layers {
		if l.Digest.String() == h.String() {
			return image.BlobLayer(c.r.b.Store, l), nil
		}
	}
	if h.String() == digest.FromBytes(c.config).String() {
		return partial.ConfigLayer(c)
	}
	return nil, fmt.Errorf("blob %s is not in the cache export", h)
}

// exportCaches writes the --cache-to exports (inline is handled when the
// image config is written).
func (r *run) exportCaches(ctx context.Context, final []image.Layer) error {
	for _, spec := range r.opts.CacheTo {
		if spec.Type == "inline" {
			continue
		}
		recs := r.exportRecords(spec.Mode, final)
		lazy := false
		for _, e := range recs {
			if l := e.Record.Layer; l != nil && l.Lazy() {
				if _, err := r.layerBlob(ctx, l.Blob); err != nil {
					return fmt.Errorf("--cache-to: %w", err)
				}
				lazy = true
			}
		}
		if lazy {
			recs = r.exportRecords(spec.Mode, final) // now naming the blobs made
		}
		cfg, err := cache.Export{Records: recs}.Marshal()
		if err != nil {
			return err
		}
		ci := &cacheImage{r: r, config: cfg}
		seen := map[digest.Digest]bool{}
		for _, e := range recs {
			if l := e.Record.Layer; l != nil && !seen[l.Digest] {
				seen[l.Digest] = true
				if err := r.ensureBlob(ctx, l.Digest); err != nil {
					return fmt.Errorf("--cache-to: %w", err)
				}
				ci.layers = append(ci.layers, l.Blob)
			}
		}
		img, err := partial.CompressedToImage(ci)
		if err != nil {
			return err
		}
		switch spec.Type {
		case "registry":
			if err := r.b.Registry.PushImage(ctx, spec.Ref, img); err != nil {
				return fmt.Errorf("--cache-to %s: %w", spec.Ref, err)
			}
		case "local":
			if err := writeLocalCache(spec.Dir, img); err != nil {
				return fmt.Errorf("--cache-to type=local,dest=%s: %w", spec.Dir, err)
			}
		}
		r.opts.Progress.Logf("exported cache to %s%s: %d records, %d layers", spec.Ref, spec.Dir, len(recs), len(ci.layers))
	}
	return nil
}

const localCacheRef = "strata-cache"

func writeLocalCache(dir string, img v1.Image) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	return p.ReplaceImage(img, match.Annotation(ocispec.AnnotationRefName, localCacheRef),
		layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: localCacheRef}))
}

func localCacheImage(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] == localCacheRef || len(im.Manifests) == 1 {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no strata cache in the OCI layout %s", dir)
}

// inlineLabel returns the inline cache label value for the final image.
func (r *run) inlineLabel(final []image.Layer) (string, bool, error) {
	for _, spec := range r.opts.CacheTo {
		if spec.Type == "inline" {
			b, err := cache.Export{Records: r.exportRecords("min", final)}.Marshal()
			return string(b), true, err
		}
	}
	return "", false, nil
}
