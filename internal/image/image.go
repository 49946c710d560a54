// Package image reads and writes images in the local store on
// go-containerregistry's v1 types: manifests, configs, history, and v1.Image
// views of stored images for the exporters and for push.
package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/strata-build/strata/internal/layer"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/store"
)

// Layer is a layer blob in the store.
type Layer = layer.Blob

// Image is a stored image: its manifest, config and layers.
type Image struct {
	Descriptor ocispec.Descriptor
	Manifest   v1.Manifest
	Config     v1.ConfigFile
	ConfigRaw  []byte
	Layers     []Layer
}

// Load reads the image whose manifest is desc.Digest from the store.
func Load(s *store.Store, manifest digest.Digest) (*Image, error) {
	raw, err := s.ReadBlob(manifest)
	if err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("load image %s: manifest: %w", manifest, err)
	}
	if m.MediaType.IsIndex() {
		return nil, fmt.Errorf("load image %s: is an index, not an image manifest", manifest)
	}
	cfgRaw, err := s.ReadBlob(digest.Digest(m.Config.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("load image %s: %w", manifest, err)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return nil, fmt.Errorf("load image %s: config: %w", manifest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("load image %s: %d layers but %d diffIDs", manifest, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	img := &Image{
		Descriptor: ocispec.Descriptor{MediaType: string(m.MediaType), Digest: manifest, Size: int64(len(raw))},
		Manifest:   m,
		Config:     cfg,
		ConfigRaw:  cfgRaw,
	}
	if img.Descriptor.MediaType == "" {
		img.Descriptor.MediaType = ocispec.MediaTypeImageManifest
	}
	for i, l := range m.Layers {
		img.Layers = append(img.Layers, Layer{
			Digest:    digest.Digest(l.Digest.String()),
			DiffID:    digest.Digest(cfg.RootFS.DiffIDs[i].String()),
			Size:      l.Size,
			MediaType: string(l.MediaType),
		})
	}
	return img, nil
}

// Write stores cfg (its rootfs set from layers) and an OCI manifest for it,
// and returns the manifest's descriptor.
func Write(s *store.Store, cfg v1.ConfigFile, layers []Layer) (*Image, error) {
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = make([]v1.Hash, 0, len(layers))
	for _, l := range layers {
		h, err := v1.NewHash(l.DiffID.String())
		if err != nil {
			return nil, fmt.Errorf("write image: %w", err)
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, h)
	}
	cfgRaw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("write image config: %w", err)
	}
	cfgDigest, err := s.PutBlob(cfgRaw)
	if err != nil {
		return nil, err
	}
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(cfgRaw))},
		Layers:    make([]ocispec.Descriptor, 0, len(layers)),
	}
	m.SchemaVersion = 2
	for _, l := range layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("write image manifest: %w", err)
	}
	md, err := s.PutBlob(raw)
	if err != nil {
		return nil, err
	}
	return Load(s, md)
}

// V1 returns a go-containerregistry view of the stored image, for exporters
// and push.
func (img *Image) V1(s *store.Store) (v1.Image, error) {
	return partial.CompressedToImage(&storedImage{s: s, img: img})
}

type storedImage struct {
	s   *store.Store
	img *Image
}

func (si *storedImage) RawConfigFile() ([]byte, error) { return si.img.ConfigRaw, nil }

func (si *storedImage) MediaType() (types.MediaType, error) {
	return types.MediaType(si.img.Descriptor.MediaType), nil
}

func (si *storedImage) RawManifest() ([]byte, error) {
	return si.s.ReadBlob(si.img.Descriptor.Digest)
}

func (si *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range si.img.Layers {
		if l.Digest.String() == h.String() {
			return &storedLayer{s: si.s, l: l}, nil
		}
	}
	if h.String() == si.img.Manifest.Config.Digest.String() {
		return partial.ConfigLayer(si)
	}
	return nil, fmt.Errorf("layer %s not in image %s", h, si.img.Descriptor.Digest)
}

type storedLayer struct {
	s *store.Store
	l Layer
}

func (sl *storedLayer) Digest() (v1.Hash, error) { return v1.NewHash(sl.l.Digest.String()) }
func (sl *storedLayer) DiffID() (v1.Hash, error) { return v1.NewHash(sl.l.DiffID.String()) }
func (sl *storedLayer) Size() (int64, error)     { return sl.l.Size, nil }
func (sl *storedLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(sl.l.MediaType), nil
}
func (sl *storedLayer) Compressed() (io.ReadCloser, error) {
	return OpenVerified(sl.s, sl.l.Digest, sl.l.Size)
}

// Import copies img (from a registry or an archive) into the store, keeping
// its manifest bytes so its digest is preserved, and returns the stored image.
func Import(ctx context.Context, s *store.Store, img v1.Image) (*Image, error) {
	return ImportCounting(ctx, s, img, nil)
}

// ImportCounting is Import that adds the bytes of every layer it downloads
// to counter as they arrive (for progress).
func ImportCounting(ctx context.Context, s *store.Store, img v1.Image, counter *atomic.Int64) (*Image, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("import image: layers: %w", err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("import image: %w", err)
		}
		if err := FetchBlob(ctx, s, digest.Digest(d.String()), l.Compressed, counter); err != nil {
			return nil, err
		}
	}
	return ImportMeta(ctx, s, img)
}

// ImportMeta puts img's config and manifest into s, not its layers, and
// returns the image: its layers are fetched when needed (FetchBlob), so
// a build whose steps on it all hit the cache never downloads them.
func ImportMeta(ctx context.Context, s *store.Store, img v1.Image) (*Image, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("import image: manifest: %w", err)
	}
	cfgRaw, err := importConfig(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("import image: config: %w", err)
	}
	if _, err := s.PutBlob(cfgRaw); err != nil {
		return nil, err
	}
	md, err := s.PutBlob(raw)
	if err != nil {
		return nil, err
	}
	return Load(s, md)
}

// FetchBlob writes blob d, read from open, into s unless it is there
// (three tries; the content is verified against d), adding the bytes read
// to counter (when not nil).
func FetchBlob(ctx context.Context, s *store.Store, d digest.Digest, open func() (io.ReadCloser, error), counter *atomic.Int64) error {
	if s.HasBlob(d) {
		return nil
	}
	err := retry(ctx, func() error {
		rc, err := open()
		if err != nil {
			return err
		}
		defer rc.Close()
		var r io.Reader = rc
		cr := &countingReader{r: rc, n: counter}
		if counter != nil {
			r = cr
		}
		_, _, err = s.WriteBlob(ctx, r, d)
		if err != nil && counter != nil {
			counter.Add(-cr.read) // the next try counts the blob again
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("import layer %s: %w", d, err)
	}
	return nil
}

// BlobLayer is a go-containerregistry view of a layer blob in the store.
func BlobLayer(s *store.Store, l Layer) partial.CompressedLayer {
	return &storedLayer{s: s, l: l}
}

// retry runs fn up to 3 times with a growing pause: a blob body cut short
// by the network (which go-containerregistry's request retries do not
// cover) is fetched again. Content is verified by digest on every try.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for i := 0; i < 3; i++ {
		if err = fn(); err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(200<<i) * time.Millisecond):
		}
	}
	return err
}

// importConfig reads an image's config blob, verified against the
// manifest's digest. It is fetched as a blob (a new request per try): a
// remote image caches a body cut short by the network as its config.
func importConfig(ctx context.Context, img v1.Image) ([]byte, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var raw []byte
	err = retry(ctx, func() error {
		raw = nil
		if l, err := img.LayerByDigest(m.Config.Digest); err == nil {
			if rc, err := l.Compressed(); err == nil {
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					return err
				}
				raw = b
			}
		}
		if raw == nil {
			b, err := img.RawConfigFile()
			if err != nil {
				return err
			}
			raw = b
		}
		if got := digest.FromBytes(raw).String(); got != m.Config.Digest.String() {
			return fmt.Errorf("config is %s, the manifest says %s", got, m.Config.Digest)
		}
		return nil
	})
	return raw, err
}

type countingReader struct {
	r    io.Reader
	n    *atomic.Int64
	read int64 // what this reader added to n
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	c.read += int64(n)
	return n, err
}
