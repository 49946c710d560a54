package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one tagged image of the store.
type Image struct {
	Name       string             // canonical reference, e.g. docker.io/library/busybox:latest
	Descriptor ocispec.Descriptor // the image manifest
}

func (s *Store) indexPath() string { return s.Path(ocispec.ImageIndexFile) }

func (s *Store) readIndex() (ocispec.Index, error) {
	var idx ocispec.Index
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, fs.ErrNotExist) {
		idx.SchemaVersion = 2
		return idx, nil
	}
	if err != nil {
		return idx, fmt.Errorf("read store index: %w", err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("read store index %s: %w", s.indexPath(), err)
	}
	return idx, nil
}

func (s *Store) writeIndex(idx ocispec.Index) error {
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	sort.Slice(idx.Manifests, func(i, j int) bool {
		return idx.Manifests[i].Annotations[RefNameAnnotation] < idx.Manifests[j].Annotations[RefNameAnnotation]
	})
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("write store index: %w", err)
	}
	return s.writeFileAtomic(s.indexPath(), b)
}

// CanonicalName parses an image reference as docker does (busybox →
// docker.io/library/busybox:latest) and returns its canonical string.
func CanonicalName(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("invalid image name %q: %w", ref, err)
	}
	return canonical(r), nil
}

// canonical spells Docker Hub as containerd does: docker.io/library/busybox:latest.
func canonical(r name.Reference) string {
	n := r.Name()
	if rest, ok := strings.CutPrefix(n, name.DefaultRegistry+"/"); ok {
		return "docker.io/" + rest
	}
	return n
}

// FamiliarName shortens a canonical name as docker prints it (busybox:latest).
func FamiliarName(n string) string {
	if rest, ok := strings.CutPrefix(n, "docker.io/library/"); ok {
		return rest
	}
	if rest, ok := strings.CutPrefix(n, "docker.io/"); ok {
		return rest
	}
	return n
}

// Tag points name at the manifest desc, replacing an earlier image of that name.
func (s *Store) Tag(ref string, desc ocispec.Descriptor) error {
	n, err := CanonicalName(ref)
	if err != nil {
		return err
	}
	if !s.HasBlob(desc.Digest) {
		return fmt.Errorf("tag %s: manifest %s is not in the store", n, desc.Digest)
	}
	return s.lock("index.lock", func() error {
		idx, err := s.readIndex()
		if err != nil {
			return err
		}
		out := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			if m.Annotations[RefNameAnnotation] != n {
				out = append(out, m)
			}
		}
		d := desc
		d.Annotations = map[string]string{RefNameAnnotation: n}
		idx.Manifests = append(out, d)
		return s.writeIndex(idx)
	})
}

// Untag removes the name; it reports whether it existed. Blobs stay until pruned.
func (s *Store) Untag(ref string) (bool, error) {
	n, err := CanonicalName(ref)
	if err != nil {
		return false, err
	}
	found := false
	err = s.lock("index.lock", func() error {
		idx, err := s.readIndex()
		if err != nil {
			return err
		}
		out := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			if m.Annotations[RefNameAnnotation] == n {
				found = true
				continue
			}
			out = append(out, m)
		}
		idx.Manifests = out
		return s.writeIndex(idx)
	})
	return found, err
}

// Lookup finds a tagged image by reference (name or name@digest).
func (s *Store) Lookup(ref string) (Image, bool, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return Image{}, false, fmt.Errorf("invalid image name %q: %w", ref, err)
	}
	imgs, err := s.Images()
	if err != nil {
		return Image{}, false, err
	}
	if d, ok := r.(name.Digest); ok {
		for _, im := range imgs {
			if im.Descriptor.Digest.String() == d.DigestStr() {
				return im, true, nil
			}
		}
		if s.HasBlob(digestOf(d.DigestStr())) {
			return Image{Name: canonical(r), Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digestOf(d.DigestStr()), Size: s.blobSize(digestOf(d.DigestStr()))}}, true, nil
		}
		return Image{}, false, nil
	}
	for _, im := range imgs {
		if im.Name == canonical(r) {
			return im, true, nil
		}
	}
	return Image{}, false, nil
}

// Images lists the tagged images, sorted by name.
func (s *Store) Images() ([]Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, m := range idx.Manifests {
		n := m.Annotations[RefNameAnnotation]
		if n == "" {
			continue
		}
		d := m
		d.Annotations = nil
		out = append(out, Image{Name: n, Descriptor: d})
	}
	return out, nil
}
