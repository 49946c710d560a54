package remote

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

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
	"github.com/strata-build/strata/internal/store"
)

// Used are the records the stages of one build used or made, by stage:
// what a --cache-to export chooses from.
type Used struct {
	mu      sync.Mutex
	byStage map[int][]cache.Exported
}

// Add notes a record stage used or made for key, a step on the
// filesystem parent.
func (u *Used) Add(stage int, parent, key cache.Key, rec cache.Record) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byStage == nil {
		u.byStage = map[int][]cache.Exported{}
	}
	u.byStage[stage] = append(u.byStage[stage], cache.Exported{Key: key, Record: rec, Parent: parent})
}

// Replace makes rec the record noted for key in stage (an alternative
// layer taken after the fact: see remote.Imported.Take).
func (u *Used) Replace(stage int, key cache.Key, rec cache.Record) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, e := range u.byStage[stage] {
		if e.Key == key {
			u.byStage[stage][i].Record = rec
		}
	}
}

// SetBlob gives the blob m to the records noted for its diffID without a
// blob, and returns them as changed.
func (u *Used) SetBlob(m layer.Blob) []cache.Exported {
	cl := &cache.Layer{Blob: m}
	u.mu.Lock()
	defer u.mu.Unlock()
	var changed []cache.Exported
	for stage, recs := range u.byStage {
		for i, e := range recs {
			if e.Record.Layer == nil || !e.Record.Layer.Lazy() || e.Record.Layer.DiffID != cl.DiffID {
				continue
			}
			e.Record.Layer = cl
			u.byStage[stage][i] = e
			changed = append(changed, e)
		}
	}
	return changed
}

// Select returns the records to export: mode max every stage's, mode min
// those whose layers are in the final image, and the empty steps of the
// stages in chain (the target and the stages it is built on).
func (u *Used) Select(mode string, final []image.Layer, chain map[int]bool) []cache.Exported {
	inFinal := map[digest.Digest]bool{}
	for _, l := range final {
		inFinal[l.Digest] = true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []cache.Exported
	seen := map[cache.Key]bool{}
	for stage, recs := range u.byStage {
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

// ErrBlobMissing is the error of reading a layer blob a cache image only
// names: a push that needs its bytes fails with it (wrapped).
var ErrBlobMissing = errors.New("the cache layer is neither in the store nor in the registry")

// Image returns exp as a cache image: its config is the record list, its
// layers the records' blobs, read from st where it has them, and the
// number of layers. A blob st lacks (or every blob, with st nil) is only
// named: pushed where the registry holds it already (a layer imported from
// the same repository, a merged shared cache) it is never read; elsewhere
// the push fails with ErrBlobMissing.
func Image(st *store.Store, exp cache.Export) (v1.Image, int, error) {
	cfg, err := exp.Marshal()
	if err != nil {
		return nil, 0, err
	}
	ci := &cacheImage{st: st, config: cfg}
	seen := map[digest.Digest]bool{}
	for _, e := range exp.Records {
		if l := e.Record.Layer; l != nil && !seen[l.Digest] {
			seen[l.Digest] = true
			ci.layers = append(ci.layers, l.Blob)
		}
	}
	img, err := partial.CompressedToImage(ci)
	return img, len(ci.layers), err
}

// cacheImage is a cache export as an OCI image manifest.
type cacheImage struct {
	st     *store.Store // nil: the layers are only named (see Image)
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
			if c.st == nil || !c.st.HasBlob(l.Digest) {
				return namedBlob{l}, nil
			}
			return image.BlobLayer(c.st, l), nil
		}
	}
	if h.String() == digest.FromBytes(c.config).String() {
		return partial.ConfigLayer(c)
	}
	return nil, fmt.Errorf("blob %s is not in the cache export", h)
}

// namedBlob is a layer blob a cache image names but cannot read.
type namedBlob struct{ l image.Layer }

func (b namedBlob) Digest() (v1.Hash, error)            { return v1.NewHash(b.l.Digest.String()) }
func (b namedBlob) Size() (int64, error)                { return b.l.Size, nil }
func (b namedBlob) MediaType() (types.MediaType, error) { return types.MediaType(b.l.MediaType), nil }
func (b namedBlob) Compressed() (io.ReadCloser, error) {
	return nil, fmt.Errorf("%s: %w", b.l.Digest, ErrBlobMissing)
}

// localRef names the cache image in an OCI layout (type=local).
const localRef = "strata-cache"

// WriteLocal writes img into the OCI layout dir (created if missing) as its
// cache image, replacing an earlier one.
func WriteLocal(dir string, img v1.Image) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	return p.ReplaceImage(img, match.Annotation(ocispec.AnnotationRefName, localRef),
		layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: localRef}))
}

// ReadLocal returns the cache image of the OCI layout dir: the one
// WriteLocal names, or the layout's only image.
func ReadLocal(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] == localRef || len(im.Manifests) == 1 {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no strata cache in the OCI layout %s", dir)
}
