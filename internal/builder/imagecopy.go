package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	units "github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/ctxio"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/source"
	"github.com/strata-build/strata/internal/store"
)

// copyFromImage runs COPY --from=IMAGE. The step's key needs only the
// image's digest and the source patterns, so a cache hit touches no image
// content. On a miss, an image whose layers the store has unpacked is read
// from them; of any other (one that is not in the store, or that the store
// holds only as blobs: imported, loaded, pulled) only the requested paths
// are extracted, layer by layer (whiteouts of later layers applied), from
// its registry or the store's blobs: the rest of the image is never
// written to disk.
func (sb *stageBuilder) copyFromImage(ctx context.Context, p *progress.Step, ref source.Ref, sd copyRequest) error {
	local, inStore, err := sb.svc.store.Lookup(ref.Image)
	if err != nil {
		return err
	}
	var dgst string
	var rimg v1.Image
	if inStore && !sb.svc.opts.Pull {
		dgst = local.Descriptor.Digest.String()
	} else {
		rimg, err = sb.svc.registry.Image(ctx, ref.Image, sb.svc.opts.Platform)
		if err != nil {
			return ref.PullError(err)
		}
		d, err := rimg.Digest()
		if err != nil {
			return err
		}
		dgst = d.String()
		inStore = false
	}
	inputs := sd.optionInputs()
	inputs = append(inputs, cache.Input{Name: "from", Value: "image " + dgst})
	for _, pat := range sd.sources {
		inputs = append(inputs, cache.Input{Name: "source " + pat, Value: "image " + dgst})
	}
	return sb.change(ctx, p, sd.createdBy, inputs, func(rootfs string) error {
		src, err := sb.imageSource(ctx, p, ref, inStore, rimg, sd.sources, "image "+dgst)
		if err != nil {
			return err
		}
		defer src.Close()
		items, err := src.Match(sd.sources, sd.o.parents)
		if err != nil {
			return err
		}
		o := sd.o
		if sd.chown != "" {
			ow, err := resolveChown(rootfs, sd.chown)
			if err != nil {
				return err
			}
			o.chown = &ow
		}
		return copyInto(ctx, rootfs, copyItemsOf(items), sd.dest, o)
	})
}

// imageSource gives the filesystem of an image to copy from (key is its
// content key): a view of its unpacked layers when it is in the store with
// any layer unpacked, else the requested paths extracted from its layer
// blobs, in the store or in its registry (rimg). The caller must Close it.
func (sb *stageBuilder) imageSource(ctx context.Context, log io.Writer, ref source.Ref, inStore bool, rimg v1.Image, patterns []string, key string) (*source.Source, error) {
	var open openLayers
	var img *image.Image // the store's, when it has the image
	if inStore {
		var err error
		img, err = sb.r.resolveImage(ctx, ref.Image, false, false, sb.svc.opts.Platform)
		if err != nil {
			return nil, err
		}
		if !blobsOnly(sb.svc.store, img) {
			return sb.svc.openImage(ctx, img, ref.Name, key)
		}
		open = func(context.Context) ([]*fetchedLayer, error) {
			return storeLayers(sb.svc.store, img), nil
		}
	} else {
		open = func(ctx context.Context) ([]*fetchedLayer, error) {
			layers, err := rimg.Layers()
			if err != nil {
				return nil, err
			}
			// each file goes when applied (drop), and any left with
			// the session
			return fetchLayers(ctx, layers, sb.svc.session.Dir), nil
		}
	}
	want := patterns
	for attempt := 0; attempt < 4; attempt++ {
		dir, err := os.MkdirTemp(sb.svc.session.Dir, "partial-")
		if err != nil {
			return nil, err
		}
		src := source.Extracted(dir, ref.Name, key)
		err = extractPaths(ctx, log, open, dir, want)
		if errors.Is(err, layer.ErrMissingLinkTarget) || errors.Is(err, errWantAll) {
			src.Close()
			break // fall back to the whole image
		}
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("--from=%s: %w", ref.From, err)
		}
		// A requested symlink is followed: make sure its target came along.
		more := missingLinkTargets(dir, want)
		if len(more) == 0 {
			return src, nil
		}
		src.Close()
		want = append(want, more...)
	}
	// the whole image: the store's, else pulled
	if img == nil {
		var err error
		if img, err = sb.r.resolveImage(ctx, ref.Image, true, false, sb.svc.opts.Platform); err != nil {
			return nil, err
		}
	}
	return sb.svc.openImage(ctx, img, ref.Name, key)
}

var errWantAll = errors.New("the pattern needs the whole image")

// blobsOnly reports whether the store holds every layer of img as a blob
// and has unpacked none of them: copying a few paths out of it then reads
// them from the blobs instead of unpacking the image.
func blobsOnly(st *store.Store, img *image.Image) bool {
	for _, l := range img.Layers {
		if st.HasLayer(l.DiffID) || !st.HasBlob(l.Digest) {
			return false
		}
	}
	return true
}

// openLayers gives extractPaths an image's layer blobs as files, in order.
type openLayers func(ctx context.Context) ([]*fetchedLayer, error)

// extractPaths applies the layers open gives, bottom first, onto dir
// keeping only the paths the patterns select, their parents and what is
// below them, and says on log which layers it read through their index.
func extractPaths(ctx context.Context, log io.Writer, open openLayers, dir string, patterns []string) error {
	var pats [][]string
	for _, p := range patterns {
		c := strings.Trim(path.Clean("/"+p), "/")
		if c == "" || strings.Contains(c, "**") {
			return errWantAll
		}
		pats = append(pats, strings.Split(c, "/"))
	}
	want := func(rel string) bool {
		parts := strings.Split(rel, "/")
		for _, pat := range pats {
			n := min(len(parts), len(pat))
			ok := true
			for i := 0; i < n; i++ {
				if m, _ := path.Match(pat[i], parts[i]); !m {
					ok = false
					break
				}
			}
			if ok {
				return true // an ancestor of a match, a match, or below one
			}
		}
		return false
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	blobs, err := open(ctx)
	if err != nil {
		return err
	}
	defer func() {
		cancel()
		for _, b := range blobs {
			<-b.done
			b.drop()
		}
	}()
	for i, b := range blobs {
		<-b.done
		if b.err != nil {
			return fmt.Errorf("layer %d: %w", i+1, b.err)
		}
		n, err := applyPaths(ctx, dir, b, want)
		b.drop() // done with it: the file goes now, not with the whole image
		if err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
		if n > 0 {
			fmt.Fprintf(log, "layer %d of %d: inflated %s of it through its index\n", i+1, len(blobs), units.BytesSize(float64(n)))
		}
	}
	return nil
}

// layersAhead is how many layers extractPaths downloads at once.
const layersAhead = 3

// fetchedLayer is a layer blob in a file: downloaded (its digest checked
// as it was read), or the store's (keep); done is closed when f, size or
// err are set.
type fetchedLayer struct {
	f    *os.File
	size int64
	err  error
	keep bool
	done chan struct{}
}

// drop closes the file, and removes it unless it is the store's.
func (b *fetchedLayer) drop() {
	if b.f != nil {
		b.f.Close()
		if !b.keep {
			os.Remove(b.f.Name())
		}
		b.f = nil
	}
}

// storeLayers opens the blobs of img's layers in st.
func storeLayers(st *store.Store, img *image.Image) []*fetchedLayer {
	out := make([]*fetchedLayer, len(img.Layers))
	for i, l := range img.Layers {
		b := &fetchedLayer{keep: true, size: l.Size, done: make(chan struct{})}
		b.f, b.err = st.OpenBlob(l.Digest)
		close(b.done)
		out[i] = b
	}
	return out
}

// fetchLayers downloads layers into files in dir, a few at a time, in
// order: the first is applied while the next ones arrive.
func fetchLayers(ctx context.Context, layers []v1.Layer, dir string) []*fetchedLayer {
	out := make([]*fetchedLayer, len(layers))
	sem := make(chan struct{}, layersAhead)
	for i := range layers {
		out[i] = &fetchedLayer{done: make(chan struct{})}
	}
	go func() {
		for i, l := range layers {
			b := out[i]
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				b.err = ctx.Err()
				close(b.done)
				continue
			}
			go func() {
				defer func() { <-sem; close(b.done) }()
				b.f, b.size, b.err = fetchLayer(ctx, l, dir)
			}()
		}
	}()
	return out
}

func fetchLayer(ctx context.Context, l v1.Layer, dir string) (*os.File, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err // the request would not see ctx (the image's context)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, 0, err
	}
	defer rc.Close()
	f, err := os.CreateTemp(dir, "layer-")
	if err != nil {
		return nil, 0, err
	}
	// the remote layer's reader checks the digest at its end; 1 MiB at a
	// time (the file's ReadFrom would copy 32 KiB at a time)
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, ctxio.Reader(ctx, rc), make([]byte, 1<<20))
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// applyPaths applies the paths want selects of one downloaded layer onto
// dir: through the layer's index when it has one (layers strata commits
// do) and the paths are a small part of it, else by reading it whole. It
// returns the bytes inflated through the index (0: read whole).
func applyPaths(ctx context.Context, dir string, b *fetchedLayer, want func(string) bool) (int64, error) {
	ix, err := layer.ReadIndex(b.f, b.size)
	if err == nil {
		n, err := layer.ApplyIndexed(ctx, dir, b.f, ix, want)
		if !errors.Is(err, layer.ErrIndexUnusable) {
			return n, err
		}
	}
	return 0, layer.ApplyFlat(ctx, dir, io.NewSectionReader(b.f, 0, b.size), want)
}

// missingLinkTargets returns the targets of requested symlinks that are not
// in the extracted tree.
func missingLinkTargets(root string, patterns []string) []string {
	var out []string
	for _, p := range patterns {
		if strings.ContainsAny(p, "*?[") {
			continue
		}
		rel := path.Clean("/" + p)
		host, err := securejoin.SecureJoin(root, path.Dir(rel))
		if err != nil {
			continue
		}
		host = path.Join(host, path.Base(rel))
		fi, err := os.Lstat(host)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			continue
		}
		target, err := os.Readlink(host)
		if err != nil {
			continue
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(rel), target)
		}
		if real, err := securejoin.SecureJoin(root, target); err == nil {
			if _, err := os.Lstat(real); err == nil {
				continue
			}
		}
		out = append(out, target)
	}
	return out
}

// copyRequest is a COPY/ADD after its flags were parsed.
type copyRequest struct {
	verb, chown, chmod string
	sources            []string
	dest               string // resolved against WORKDIR; trailing "/" kept
	o                  copyOptions
	createdBy          string
}

// copyRules names the version of the rules COPY and ADD follow (which
// files --exclude leaves out, how archives are unpacked): a change of them
// that gives other files for the same inputs bumps it, so that layers cached
// under the old rules are not reused.
const copyRules = "2"

// optionInputs are the cache key inputs of the instruction's options.
func (c copyRequest) optionInputs() []cache.Input {
	return []cache.Input{
		{Name: "instruction", Value: c.verb},
		{Name: "rules", Value: copyRules},
		{Name: "dest", Value: c.dest},
		{Name: "chown", Value: c.chown},
		{Name: "chmod", Value: c.chmod},
		{Name: "options", Value: fmt.Sprintf("parents=%v unpack=%v exclude=%q link=%v", c.o.parents, c.o.unpack, c.o.exclude, c.o.link)},
	}
}
