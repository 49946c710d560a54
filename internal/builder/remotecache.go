package builder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/cache/remote"
	"github.com/strata-build/strata/internal/cache/sharedcache"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/progress"
)

// CacheSpec is one --cache-to or --cache-from value.
type CacheSpec struct {
	Type string // registry, local or inline
	Ref  string // type=registry
	Dir  string // type=local: dest= (export) or src= (import)
	Mode string // export: min (the final image's layers) or max (every stage)
	// Bounds limit what a registry cache keeps (max-size=, max-age=).
	Bounds cache.Bounds
	// IgnoreError makes a failed export a warning (ignore-error=true).
	IgnoreError bool
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
		case "max-size":
			n, err := units.RAMInBytes(v) // 512MB, 2GiB (binary units, as docker)
			if err != nil || n <= 0 {
				return c, fmt.Errorf("cache %q: max-size=%s is not a size", s, v)
			}
			c.Bounds.MaxSize = n
		case "max-age":
			d, err := parseAge(v)
			if err != nil {
				return c, fmt.Errorf("cache %q: max-age=%s: %w", s, v, err)
			}
			c.Bounds.MaxAge = d
		case "ignore-error":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return c, fmt.Errorf("cache %q: ignore-error=%s is not true or false", s, v)
			}
			c.IgnoreError = b
		case "oci-mediatypes", "compression", "image-manifest":
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
	if c.Bounds != (cache.Bounds{}) && c.Type == "inline" {
		return c, fmt.Errorf("cache %q: max-size and max-age bound a registry or local cache", s)
	}
	return c, nil
}

// parseAge parses a Go duration (90m, 36h) or a number of days (7d).
func parseAge(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil || days <= 0 {
			return 0, errors.New("not a duration (7d, 36h, 90m)")
		}
		return time.Duration(days * 24 * float64(time.Hour)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("not a duration (7d, 36h, 90m)")
	}
	return d, nil
}

// importCaches reads the --cache-from sources into r.imported.
func (r *run) importCaches(ctx context.Context) error {
	for _, spec := range r.opts.CacheFrom {
		var imgs []v1.Image
		var err error
		switch spec.Type {
		case "registry":
			imgs, err = sharedcache.Read(ctx, r.b.Registry, spec.Ref)
		case "local":
			var img v1.Image
			img, err = remote.ReadLocal(spec.Dir)
			imgs = []v1.Image{img}
		default:
			return fmt.Errorf("--cache-from type=%s cannot be imported", spec.Type)
		}
		if err != nil {
			r.opts.Progress.Logf("warning: --cache-from %s%s: %v", spec.Ref, spec.Dir, err)
			continue
		}
		total := 0
		for _, img := range imgs {
			n, err := r.imported.Add(img)
			if err != nil {
				r.opts.Progress.Logf("warning: --cache-from %s%s: %v", spec.Ref, spec.Dir, err)
				continue
			}
			total += n
		}
		if len(imgs) > 1 {
			r.opts.Progress.Logf("importing cache from %s%s: %d records (%d exports)", spec.Ref, spec.Dir, total, len(imgs))
		} else if len(imgs) == 1 {
			r.opts.Progress.Logf("importing cache from %s%s: %d records", spec.Ref, spec.Dir, total)
		}
	}
	return nil
}

// ensureBlob makes sure the layer blob d is in the store, fetching it from
// the --cache-from source that offered it, or from the registry of the
// base image it is a layer of (baseBlobs).
func (r *run) ensureBlob(ctx context.Context, d digest.Digest) error {
	if r.b.Store.HasBlob(d) || r.imported.Offers(d) {
		return r.imported.Fetch(ctx, r.b.Store, d)
	}
	if ok, err := r.b.bases.fetch(ctx, r.b.Registry, r.b.Store, d, nil); ok {
		return err
	}
	return r.imported.Fetch(ctx, r.b.Store, d)
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
	_, err := unpackLayer(ctx, r.b.Store, r.svc.unpack, l)
	return err
}

// exportRecords returns the records to export: mode max all stages', mode
// min those whose layers are in the final image (and its empty steps).
func (r *run) exportRecords(mode string, final []image.Layer) []cache.Exported {
	chain := map[int]bool{}
	for i := r.plan.Target; i >= 0; i = r.plan.All[i].BaseStage {
		chain[i] = true
	}
	return r.used.Select(mode, final, chain)
}

// exportCaches writes the --cache-to exports (inline is handled when the
// image config is written).
func (r *run) exportCaches(ctx context.Context, final []image.Layer) error {
	for i, spec := range r.opts.CacheTo {
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
		if r.opts.cacheRecords != nil { // BuildIndex exports every platform's at once
			r.opts.cacheRecords.add(i, recs, r.ensureBlob)
			continue
		}
		if err := r.b.writeCache(ctx, spec, recs, r.ensureBlob, r.opts.Progress); err != nil {
			return err
		}
	}
	return nil
}

// fetchFunc puts a layer blob an imported cache offers into the store.
type fetchFunc func(ctx context.Context, d digest.Digest) error

// writeCache writes the cache export of recs where spec says (records of
// one key and layer are kept once: cache.Merge). A registry export is a
// journal merged into the shared ref (package sharedcache); a layer
// imported from a cache is not fetched for it unless the registry lacks it
// (then fetch gets it and the export is tried again). A local export
// holds every blob, so fetch gets them first. With ignore-error=true a
// failure is a warning.
func (b *Builder) writeCache(ctx context.Context, spec CacheSpec, recs []cache.Exported, fetch fetchFunc, pr *progress.Printer) error {
	recs = cache.Merge(cache.Export{Records: recs})
	fetchAll := func() error {
		for _, e := range recs {
			if l := e.Record.Layer; l != nil {
				if err := fetch(ctx, l.Digest); err != nil {
					return fmt.Errorf("--cache-to: %w", err)
				}
			}
		}
		return nil
	}
	var err error
	if spec.Type == "local" {
		err = fetchAll()
	}
	if err == nil {
		err = b.writeCacheTo(ctx, spec, recs, pr)
	}
	if errors.Is(err, remote.ErrBlobMissing) && ctx.Err() == nil {
		if err = fetchAll(); err == nil {
			err = b.writeCacheTo(ctx, spec, recs, pr)
		}
	}
	if err != nil && spec.IgnoreError && ctx.Err() == nil {
		pr.Logf("warning: %v (ignore-error=true)", err)
		return nil
	}
	return err
}

func (b *Builder) writeCacheTo(ctx context.Context, spec CacheSpec, recs []cache.Exported, pr *progress.Printer) error {
	now := time.Now().UTC().Truncate(time.Second) // when used, for max-age and max-size (not SOURCE_DATE_EPOCH)
	recs = slices.Clone(recs)
	for i := range recs {
		recs[i].Used = now
	}
	exp := cache.Export{Records: recs}
	if spec.Type == "local" {
		exp.Records = spec.Bounds.Bound(exp.Records, now)
	}
	img, layers, err := remote.Image(b.Store, exp)
	if err != nil {
		return err
	}
	switch spec.Type {
	case "registry":
		res, err := sharedcache.Publish(ctx, b.Registry, spec.Ref, img, sharedcache.Options{Bounds: spec.Bounds, Logf: pr.Logf})
		if err != nil {
			return fmt.Errorf("--cache-to %s: %w", spec.Ref, err)
		}
		msg := fmt.Sprintf("exported cache to %s as %s: %d records, %d layers", spec.Ref, res.Journal, len(recs), layers)
		if res.Merged {
			msg += fmt.Sprintf(" (merged: %d records", res.Records)
			if res.Deleted > 0 {
				msg += fmt.Sprintf(", %d old journals deleted", res.Deleted)
			}
			msg += ")"
		} else {
			msg += " (not merged yet: imports read the journal)"
		}
		pr.Logf("%s", msg)
		return nil
	case "local":
		if err := remote.WriteLocal(spec.Dir, img); err != nil {
			return fmt.Errorf("--cache-to type=local,dest=%s: %w", spec.Dir, err)
		}
	}
	pr.Logf("exported cache to %s: %d records, %d layers", spec.Dir, len(exp.Records), layers)
	return nil
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
