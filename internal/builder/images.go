package builder

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/human"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/source"
	"github.com/strata-build/strata/internal/store"
)

// ResolveImage returns the image ref from the store, pulling it (and tagging
// it locally, like `docker pull`) when it is not there or when pull is set.
// Concurrent calls for the same reference share one pull; a later call
// pulls again.
func (b *Builder) ResolveImage(ctx context.Context, ref string, pull bool, plat v1.Platform, pr *progress.Printer) (*image.Image, error) {
	return b.resolveImage(ctx, ref, pull, false, plat, pr, nil)
}

// resolveImage is ResolveImage; a build passes its memo, so that it pulls
// each reference once (as BuildKit resolves each image once per build),
// and its concurrent stages share that pull. With lazy, an image the
// store lacks is resolved without its layers (see baseBlobs).
func (b *Builder) resolveImage(ctx context.Context, ref string, pull, lazy bool, plat v1.Platform, pr *progress.Printer, memo *pullGroup) (*image.Image, error) {
	if store.IsID(ref) { // names a local image: never pulled
		im, err := b.Store.Resolve(ref)
		if err != nil {
			return nil, err
		}
		return image.LoadFor(b.Store, im.Descriptor, plat)
	}
	canon, err := store.CanonicalName(ref)
	if err != nil {
		return nil, err
	}
	if !pull {
		im, ok, err := b.Store.Lookup(canon)
		if err != nil {
			return nil, err
		}
		if ok {
			img, err := image.LoadFor(b.Store, im.Descriptor, plat)
			if err == nil || b.Registry == nil {
				return img, err
			}
			// an index without this platform's image in the store: pull it
		}
	}
	key := canon + "@" + platform.Format(plat)
	get := func() (*image.Image, error) { return b.Pull(ctx, canon, plat, pr) }
	if lazy {
		key += " lazy"
		get = func() (*image.Image, error) { return b.resolveLazy(ctx, canon, plat, pr) }
	}
	shared := func() (*image.Image, error) { return b.pulls.do(ctx, key, get) }
	if memo == nil {
		return shared()
	}
	return memo.do(ctx, key, shared)
}

// pullGroup shares pulls by reference: a caller that comes while a pull of
// its reference runs waits for it and gets its result. With keep, every
// later caller gets that result too (a build's memo, failures included);
// without, the pull is forgotten once done (the Builder's, shared by its
// concurrent builds). The zero value is ready to use.
type pullGroup struct {
	keep  bool
	mu    sync.Mutex
	calls map[string]*pullCall
}

type pullCall struct {
	done chan struct{}
	img  *image.Image
	err  error
}

// do returns the result of the pull of ref that runs or (with keep) ran,
// else runs pull.
func (g *pullGroup) do(ctx context.Context, ref string, pull func() (*image.Image, error)) (*image.Image, error) {
	g.mu.Lock()
	if c, ok := g.calls[ref]; ok {
		g.mu.Unlock()
		select {
		case <-c.done:
			return c.img, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if g.calls == nil {
		g.calls = map[string]*pullCall{}
	}
	c := &pullCall{done: make(chan struct{})}
	g.calls[ref] = c
	g.mu.Unlock()
	c.img, c.err = pull()
	if !g.keep {
		g.mu.Lock()
		delete(g.calls, ref)
		g.mu.Unlock()
	}
	close(c.done)
	return c.img, c.err
}

// Pull fetches ref from its registry (or a mirror) into the store and tags it.
func (b *Builder) Pull(ctx context.Context, ref string, plat v1.Platform, pr *progress.Printer) (*image.Image, error) {
	return asStep(pr, "pull "+ref, func(step *progress.Step) (*image.Image, error) { return b.pull(ctx, ref, plat, step) })
}

// asStep runs fn as the progress step name of pr (fn gets nil, and no
// step is shown, when pr is nil).
func asStep(pr *progress.Printer, name string, fn func(*progress.Step) (*image.Image, error)) (*image.Image, error) {
	var step *progress.Step
	if pr != nil {
		step = pr.Start(name)
	}
	img, err := fn(step)
	if step != nil {
		if err != nil {
			step.Fail(err)
		} else {
			step.Done()
		}
	}
	return img, err
}

func (b *Builder) pull(ctx context.Context, ref string, plat v1.Platform, step *progress.Step) (*image.Image, error) {
	if b.Registry == nil {
		return nil, fmt.Errorf("image %s is not in the store and no registry is configured", ref)
	}
	rimg, index, err := b.Registry.ImageAndIndex(ctx, ref, plat)
	if err != nil {
		return nil, err
	}
	var total int64
	if m, err := rimg.Manifest(); err == nil {
		for _, l := range m.Layers {
			total += l.Size
		}
	}
	var got atomic.Int64
	stop := reportTransfer(step, "downloaded", &got, total)
	img, err := image.ImportCounting(ctx, b.Store, rimg, &got)
	stop()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	desc, err := b.nameTarget(img, index)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := b.Store.Tag(ref, desc); err != nil {
		return nil, err
	}
	return img, nil
}

// nameTarget returns what a name pulled as img (from the image index
// index, when the registry sent one) points to in the store: the name
// means every platform, so the index, put into the store; else img.
func (b *Builder) nameTarget(img *image.Image, index *registry.Manifest) (ocispec.Descriptor, error) {
	if index == nil {
		return img.Descriptor, nil
	}
	d, err := b.Store.PutBlob(index.Raw)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: index.MediaType, Digest: d, Size: int64(len(index.Raw))}, nil
}

// LayerDirs unpacks (once, shared by every build) the layers of img and
// returns their directories, bottom first.
func (b *Builder) LayerDirs(ctx context.Context, img *image.Image) ([]string, error) {
	return layerDirs(ctx, b.Store, b.applyOptions(), img)
}

// reportTransfer writes "VERB 12.3MB of 45.6MB (7.89MB/s)" into step every second
// while a transfer runs, and a last line when the returned stop is called.
func reportTransfer(step *progress.Step, verb string, n *atomic.Int64, total int64) func() {
	if step == nil {
		return func() {}
	}
	start := time.Now()
	line := func() {
		d := n.Load()
		of := ""
		if total > 0 {
			of = " of " + human.Size(total)
		}
		fmt.Fprintf(step, "%s %s%s (%s)\n", verb, human.Size(d), of, human.Rate(d, time.Since(start)))
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-done:
				return
			case <-t.C:
				// only when bytes moved: a stalled or retrying transfer adds
				// no lines (the elapsed time of the step still moves)
				if d := n.Load(); d != last {
					last = d
					line()
				}
			}
		}
	}()
	return func() {
		close(done)
		if n.Load() > 0 {
			line()
		}
	}
}

// resolveImage resolves ref for this build: each reference is pulled at
// most once per build, however many stages name it.
func (r *run) resolveImage(ctx context.Context, ref string, pull, lazy bool, plat v1.Platform) (*image.Image, error) {
	return r.b.resolveImage(ctx, ref, pull, lazy, plat, r.opts.Progress, r.pulls)
}

// httpOptions bound the downloads of ADD URLs.
func (b *Builder) httpOptions() source.HTTPOptions {
	t := b.HTTPTimeout
	if t == 0 {
		t = DefaultHTTPTimeout
	}
	return source.HTTPOptions{Timeout: t, TimeoutEnv: HTTPTimeoutEnv, Bound: b.applyOptions()}
}
