package builder

import (
	"context"
	"errors"
	"slices"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/image"
)

// BuildIndex builds opts for each platform of plats, all at once (a step
// that does not depend on the platform, e.g. of a FROM
// --platform=$BUILDPLATFORM stage with the same arguments, runs in one
// build while the others wait for its cache record: see stepLocks), and
// stores an image index of the images in plats's order. Each --cache-to
// is written once, with every platform's records. The first error ends
// the others.
func (b *Builder) BuildIndex(ctx context.Context, opts Options, plats []v1.Platform) (*image.Index, error) {
	opts.setDefaults()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	imgs := make([]*image.Image, len(plats))
	errs := make([]error, len(plats))
	records := &cacheRecords{byExport: map[int][]cache.Exported{}}
	var wg sync.WaitGroup
	for i, p := range plats {
		o := opts
		o.Platform, o.showPlatform, o.cacheRecords = p, len(plats) > 1, records
		wg.Add(1)
		go func() {
			defer wg.Done()
			if imgs[i], errs[i] = b.Build(ctx, o); errs[i] != nil {
				cancel(errs[i])
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, spec := range opts.CacheTo {
		if spec.Type == "inline" {
			continue
		}
		if err := b.writeCache(ctx, spec, records.byExport[i], records.fetch, opts.Progress); err != nil {
			return nil, err
		}
	}
	return image.WriteIndex(b.Store, imgs)
}

// cacheRecords collects the records of each --cache-to export (by its
// index in Options.CacheTo) from the builds of a BuildIndex.
type cacheRecords struct {
	mu       sync.Mutex
	byExport map[int][]cache.Exported
	fetchers []fetchFunc // each build's, for the blobs it imported
}

func (c *cacheRecords) add(i int, recs []cache.Exported, fetch fetchFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byExport[i] = append(c.byExport[i], recs...)
	c.fetchers = append(c.fetchers, fetch)
}

// fetch gets blob d from the first build's imports that offer it.
func (c *cacheRecords) fetch(ctx context.Context, d digest.Digest) error {
	c.mu.Lock()
	fs := slices.Clone(c.fetchers)
	c.mu.Unlock()
	var errs []error
	for _, f := range fs {
		err := f(ctx, d)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
