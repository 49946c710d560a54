package image

import (
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/store"
)

// ForPlatform returns the image manifest that d names for platform p: d
// itself when it is an image manifest; when d is an image index (a
// multi-platform image), its image for p (OS, architecture and variant,
// normalized as containerd does) that the store holds. When it has none,
// the error lists the platforms it has.
func ForPlatform(s *store.Store, d digest.Digest, p v1.Platform) (digest.Digest, error) {
	raw, err := s.ReadBlob(d)
	if err != nil {
		return "", fmt.Errorf("load image: %w", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return "", fmt.Errorf("load image %s: %w", d, err)
	}
	if !idx.MediaType.IsIndex() && idx.Manifests == nil {
		return d, nil
	}
	var have []string
	for _, m := range idx.Manifests {
		if m.Platform == nil || !m.MediaType.IsImage() {
			continue // attestations and the like
		}
		held := s.HasBlob(digest.Digest(m.Digest.String()))
		if platform.Same(*m.Platform, p) && held {
			return digest.Digest(m.Digest.String()), nil
		}
		name := platform.Format(*m.Platform)
		if !held {
			name += " (not in the store)"
		}
		have = append(have, name)
	}
	return "", fmt.Errorf("image %s has no %s image in the store; it has %s", d, platform.Format(p), orNone(have))
}

// LoadFor loads the image that d names for platform p (see ForPlatform).
func LoadFor(s *store.Store, d digest.Digest, p v1.Platform) (*Image, error) {
	m, err := ForPlatform(s, d, p)
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
