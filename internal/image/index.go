package image

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/store"
)

// Index is a stored image index: a multi-platform image.
type Index struct {
	Descriptor ocispec.Descriptor
	Images     []*Image // in the index's order
}

// WriteIndex stores an OCI image index of imgs, in their order, each with
// the platform its config says (as BuildKit writes one: no annotations),
// and returns it. The same images give the same index, byte for byte.
func WriteIndex(s *store.Store, imgs []*Image) (*Index, error) {
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	for _, img := range imgs {
		p := PlatformOf(img)
		d := ocispec.Descriptor{MediaType: img.Descriptor.MediaType, Digest: img.Descriptor.Digest, Size: img.Descriptor.Size,
			Platform: &ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}}
		idx.Manifests = append(idx.Manifests, d)
	}
	raw, err := json.Marshal(idx)
	if err != nil {
		return nil, fmt.Errorf("write image index: %w", err)
	}
	dg, err := s.PutBlob(raw)
	if err != nil {
		return nil, fmt.Errorf("write image index: %w", err)
	}
	return &Index{
		Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: dg, Size: int64(len(raw))},
		Images:     imgs,
	}, nil
}

// LoadIndex loads the image index desc names and each of its images
// (attestations and other non-images left out), which the store must hold.
func LoadIndex(s *store.Store, desc ocispec.Descriptor) (*Index, error) {
	idx, err := readIndex(s, desc.Digest)
	if err != nil {
		return nil, err
	}
	out := &Index{Descriptor: desc}
	for _, m := range imageDescs(idx) {
		d := digest.Digest(m.Digest.String())
		if !s.HasBlob(d) {
			return nil, fmt.Errorf("image index %s: its %s image is not in the store (pull or build it for that platform)", desc.Digest, platform.Format(*m.Platform))
		}
		img, err := Load(s, d)
		if err != nil {
			return nil, err
		}
		out.Images = append(out.Images, img)
	}
	return out, nil
}

// IsIndex reports whether a descriptor's media type is an image index (an
// OCI index or a Docker manifest list).
func IsIndex(mediaType string) bool { return types.MediaType(mediaType).IsIndex() }

// PlatformOf returns the platform img's config says.
func PlatformOf(img *Image) v1.Platform {
	return v1.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}
}

// IndexPlatforms returns the platforms of the images of the index d, in
// its order.
func IndexPlatforms(s *store.Store, d digest.Digest) ([]v1.Platform, error) {
	idx, err := readIndex(s, d)
	if err != nil {
		return nil, err
	}
	var out []v1.Platform
	for _, m := range imageDescs(idx) {
		out = append(out, *m.Platform)
	}
	return out, nil
}

// readIndex reads the blob d as an image index; nil (and no error) when d
// is an image manifest.
func readIndex(s *store.Store, d digest.Digest) (*v1.IndexManifest, error) {
	raw, err := s.ReadBlob(d)
	if err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("load image %s: %w", d, err)
	}
	if !idx.MediaType.IsIndex() && idx.Manifests == nil {
		return nil, nil
	}
	return &idx, nil
}

// imageDescs returns the descriptors of idx that are images of a platform
// (not attestations and the like), in order.
func imageDescs(idx *v1.IndexManifest) []v1.Descriptor {
	if idx == nil {
		return nil
	}
	var out []v1.Descriptor
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.MediaType.IsImage() {
			out = append(out, m)
		}
	}
	return out
}
