package image

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/store"
)

// ForPlatform returns the image manifest that d names for platform p: d
// itself when it is an image manifest; when d is an image index (a
// multi-platform image), its image for p (OS, architecture and variant,
// normalized as containerd does) that the store holds. When it has none,
// the error lists the platforms it has.
func ForPlatform(s *store.Store, d digest.Digest, p v1.Platform) (digest.Digest, error) {
	idx, err := readIndex(s, d)
	if err != nil || idx == nil {
		return d, err
	}
	var have []string
	for _, m := range imageDescs(idx) {
		md := digest.Digest(m.Digest.String())
		held := s.HasBlob(md)
		if platform.Same(*m.Platform, p) && held {
			return md, nil
		}
		name := platform.Format(*m.Platform)
		if !held {
			name += " (not in the store)"
		}
		have = append(have, name)
	}
	return "", fmt.Errorf("image %s has no %s image in the store; it has %s", d, platform.Format(p), orNone(have))
}

// LoadFor loads the image that desc names for platform p (see
// ForPlatform). A descriptor whose media type says it is an image manifest
// is loaded without reading it as an index first.
func LoadFor(s *store.Store, desc ocispec.Descriptor, p v1.Platform) (*Image, error) {
	if desc.MediaType != "" && !IsIndex(desc.MediaType) {
		return Load(s, desc.Digest)
	}
	m, err := ForPlatform(s, desc.Digest, p)
	if err != nil {
		return nil, err
	}
	return Load(s, m)
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
