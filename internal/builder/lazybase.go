package builder

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/store"
)

// baseBlobs are the layers of base images a build resolved in a registry
// without downloading them (as BuildKit's lazy refs): a stage on such a
// base fetches a layer only when a step needs its files (a miss, a COPY
// or a mount of the stage) or the image written needs its blob. A fleet
// builder whose steps all hit the shared cache so never downloads the
// toolchain image of a build stage. Shared by a Builder's builds.
type baseBlobs struct {
	mu     sync.Mutex
	layers map[digest.Digest]string      // offered: the reference whose repository holds each
	locks  map[digest.Digest]*sync.Mutex // one fetch of a blob at a time
	names  map[string]pendingName        // names to give once complete
}

// pendingName is a base image resolved under a name: the name is given in
// the store (as a pull gives it) once every layer of the image is there.
type pendingName struct {
	desc ocispec.Descriptor // the image, or the index the name means
	img  *image.Image
}

// resolveLazy puts the config and manifest of ref for plat (and the index it
// names, if any) into the store, offers its layers, and returns the image.
func (b *Builder) resolveLazy(ctx context.Context, ref string, plat v1.Platform, pr *progress.Printer) (*image.Image, error) {
	if b.Registry == nil {
		return nil, fmt.Errorf("image %s is not in the store and no registry is configured", ref)
	}
	return asStep(pr, "resolve "+ref, func(*progress.Step) (*image.Image, error) { return b.resolveLazyStep(ctx, ref, plat) })
}

func (b *Builder) resolveLazyStep(ctx context.Context, ref string, plat v1.Platform) (*image.Image, error) {
	rimg, index, err := b.Registry.ImageAndIndex(ctx, ref, plat)
	if err != nil {
		return nil, err
	}
	img, err := image.ImportMeta(ctx, b.Store, rimg)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	desc, err := b.nameTarget(img, index)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	bb := &b.bases
	bb.mu.Lock()
	defer bb.mu.Unlock()
	if bb.layers == nil {
		bb.layers, bb.locks, bb.names = map[digest.Digest]string{}, map[digest.Digest]*sync.Mutex{}, map[string]pendingName{}
	}
	for _, l := range img.Layers {
		bb.layers[l.Digest] = ref
	}
	bb.names[ref] = pendingName{desc: desc, img: img}
	return img, nil
}

// fetch writes blob d of a resolved base into s, from reg, and reports
// whether d is one (false: no base offers it).
func (bb *baseBlobs) fetch(ctx context.Context, reg *registry.Client, s *store.Store, d digest.Digest, counter *atomic.Int64) (bool, error) {
	bb.mu.Lock()
	ref, ok := bb.layers[d]
	var lock *sync.Mutex
	if ok {
		if lock = bb.locks[d]; lock == nil {
			lock = &sync.Mutex{}
			bb.locks[d] = lock
		}
	}
	bb.mu.Unlock()
	if !ok {
		return false, nil
	}
	lock.Lock()
	defer lock.Unlock()
	h, err := v1.NewHash(d.String())
	if err != nil {
		return true, err
	}
	open := func() (io.ReadCloser, error) { return reg.OpenBlob(ctx, ref, h) }
	return true, image.FetchBlob(ctx, s, d, open, counter)
}

// settle names in s each resolved base whose layers are all there now, as
// a pull would have: a later build finds it without the registry.
func (bb *baseBlobs) settle(s *store.Store) error {
	bb.mu.Lock()
	defer bb.mu.Unlock()
	for name, p := range bb.names {
		complete := true
		for _, l := range p.img.Layers {
			complete = complete && s.HasBlob(l.Digest)
		}
		if !complete {
			continue
		}
		if err := s.Tag(name, p.desc); err != nil {
			return err
		}
		delete(bb.names, name)
	}
	return nil
}
