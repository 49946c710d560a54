package image

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

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
		d := ocispec.Descriptor{MediaType: img.Descriptor.MediaType, Digest: img.Descriptor.Digest, Size: img.Descriptor.Size,
			Platform: &ocispec.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}}
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
	raw, err := s.ReadBlob(desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("load image index: %w", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("load image index %s: %w", desc.Digest, err)
	}
	out := &Index{Descriptor: desc}
	for _, m := range idx.Manifests {
		if m.Platform == nil || (m.MediaType != ocispec.MediaTypeImageManifest && m.MediaType != "application/vnd.docker.distribution.manifest.v2+json") {
			continue
		}
		if !s.HasBlob(m.Digest) {
			return nil, fmt.Errorf("image index %s: its %s/%s image is not in the store (pull or build it for that platform)", desc.Digest, m.Platform.OS, m.Platform.Architecture)
		}
		img, err := Load(s, m.Digest)
		if err != nil {
			return nil, err
		}
		out.Images = append(out.Images, img)
	}
	return out, nil
}

// IsIndex reports whether a descriptor's media type is an image index (an
// OCI index or a Docker manifest list).
func IsIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == "application/vnd.docker.distribution.manifest.list.v2+json"
}

// PlatformOf returns the platform img's config says.
func PlatformOf(img *Image) v1.Platform {
	return v1.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}
}

// IndexPlatforms returns the platforms of the images of the index d, in
// its order.
func IndexPlatforms(s *store.Store, d digest.Digest) ([]v1.Platform, error) {
	raw, err := s.ReadBlob(d)
	if err != nil {
		return nil, fmt.Errorf("load image index: %w", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("load image index %s: %w", d, err)
	}
	var out []v1.Platform
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.MediaType.IsImage() {
			out = append(out, *m.Platform)
		}
	}
	return out, nil
}
