package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one image of the store: a named one, or (Name empty) an
// untagged one, docker's dangling image: an image built without -t, loaded
// or imported without a name, or one whose last name moved to another image.
//
// In index.json a named image is an entry with the ref-name annotation (one
// entry per name); an untagged image is one entry without annotations. An
// image has an untagged entry only while it has no name.
type Image struct {
	Name       string             // canonical reference, e.g. docker.io/library/busybox:latest; "" when untagged
	Descriptor ocispec.Descriptor // the image manifest
}

// ErrNoSuchImage is returned (wrapped) by Resolve for an image the store
// does not hold.
var ErrNoSuchImage = errors.New("no such image")

// ErrAmbiguousID is returned (wrapped) by Resolve for a short ID that more
// than one image's ID starts with.
var ErrAmbiguousID = errors.New("ambiguous image ID")

// MinShortID is the fewest hex digits of an image ID that Resolve accepts
// as a prefix.
const MinShortID = 4

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
	sort.SliceStable(idx.Manifests, func(i, j int) bool {
		ni, nj := idx.Manifests[i].Annotations[RefNameAnnotation], idx.Manifests[j].Annotations[RefNameAnnotation]
		if (ni == "") != (nj == "") {
			return nj == "" // named first
		}
		if ni != nj {
			return ni < nj
		}
		return idx.Manifests[i].Digest < idx.Manifests[j].Digest
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
	if err := CheckName(ref); err != nil {
		return "", fmt.Errorf("invalid image name %q: %w", ref, err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("invalid image name %q: %w", ref, err)
	}
	return canonical(r), nil
}

// CheckName checks an image reference (NAME[:TAG][@DIGEST]) against Docker's
// grammar (distribution/reference), which go-containerregistry's parser is
// laxer than: it takes path components such as "..", "-rf" or an empty one
// (a leading "/"), which would then become paths in a registry's URLs.
// Every name strata stores or sends to a registry passes here.
func CheckName(ref string) error {
	_, err := reference.ParseNormalizedNamed(ref)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, reference.ErrReferenceInvalidFormat):
		return errors.New(`the path components of a name are lowercase letters and digits separated by ".", "_", "__" or "-" (no "..", no leading "/" or "-")`)
	default:
		return err
	}
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

// Tag points name at the manifest desc, replacing an earlier image of that
// name. As in docker, the image that had the name stays (untagged, dangling)
// when it has no other name, and desc loses its untagged entry.
func (s *Store) Tag(ref string, desc ocispec.Descriptor) error {
	return s.Record([]Image{{Name: ref, Descriptor: desc}})
}

// Record records images in one locked edit of index.json, in order: each
// named one (Name any image reference) as Tag does, each untagged one as
// AddImage does. When one cannot be recorded (its name is none, its
// manifest is not in the store), none is. `strata load` records an
// archive's images with it, so they appear all together.
func (s *Store) Record(imgs []Image) error {
	names := make([]string, len(imgs))
	for i, im := range imgs {
		if im.Name != "" {
			n, err := CanonicalName(im.Name)
			if err != nil {
				return err
			}
			names[i] = n
		}
		if !s.HasBlob(im.Descriptor.Digest) {
			if im.Name != "" {
				return fmt.Errorf("tag %s: manifest %s is not in the store", names[i], im.Descriptor.Digest)
			}
			return fmt.Errorf("add image: manifest %s is not in the store", im.Descriptor.Digest)
		}
	}
	return s.editIndex(func(idx *ocispec.Index) (bool, error) {
		changed := false
		for i, im := range imgs {
			if names[i] == "" {
				n := len(idx.Manifests)
				idx.Manifests = keepRecord(idx.Manifests, im.Descriptor)
				changed = changed || len(idx.Manifests) != n
				continue
			}
			idx.Manifests = tag(idx.Manifests, names[i], im.Descriptor)
			changed = true
		}
		return changed, nil
	})
}

// tag points the canonical name n at desc in entries, as Tag describes.
func tag(entries []ocispec.Descriptor, n string, desc ocispec.Descriptor) []ocispec.Descriptor {
	var replaced []ocispec.Descriptor
	out := entries[:0]
	for _, m := range entries {
		name := m.Annotations[RefNameAnnotation]
		switch {
		case name == n:
			if m.Digest != desc.Digest {
				replaced = append(replaced, m)
			}
		case name == "" && m.Digest == desc.Digest:
		default:
			out = append(out, m)
		}
	}
	d := desc
	d.Annotations = map[string]string{RefNameAnnotation: n}
	out = append(out, d)
	for _, m := range replaced {
		out = keepRecord(out, m)
	}
	return out
}

// editIndex runs fn on index.json under the index lock, and writes it back
// when fn reports a change.
func (s *Store) editIndex(fn func(idx *ocispec.Index) (changed bool, err error)) error {
	return s.lock("index.lock", func() error {
		idx, err := s.readIndex()
		if err != nil {
			return err
		}
		changed, err := fn(&idx)
		if err != nil || !changed {
			return err
		}
		return s.writeIndex(idx)
	})
}

// removeEntries drops the index entries that drop selects and returns them.
func (s *Store) removeEntries(drop func(m ocispec.Descriptor) bool) ([]ocispec.Descriptor, error) {
	var removed []ocispec.Descriptor
	err := s.editIndex(func(idx *ocispec.Index) (bool, error) {
		out := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			if drop(m) {
				removed = append(removed, m)
				continue
			}
			out = append(out, m)
		}
		idx.Manifests = out
		return len(removed) > 0, nil
	})
	return removed, err
}

// keepRecord adds an untagged entry for m's manifest to entries unless
// an entry already points at it.
func keepRecord(entries []ocispec.Descriptor, m ocispec.Descriptor) []ocispec.Descriptor {
	for _, e := range entries {
		if e.Digest == m.Digest {
			return entries
		}
	}
	m.Annotations = nil
	return append(entries, m)
}

// AddImage records the manifest desc as an image of the store: untagged,
// unless a name already points at it. A build without -t, and a load or
// import without a name, record their image this way.
func (s *Store) AddImage(desc ocispec.Descriptor) error {
	return s.Record([]Image{{Descriptor: desc}})
}

// RemoveImage removes the image whose manifest is d: all its names and its
// untagged entry. It returns the names it removed and whether there was
// anything to remove. The blobs stay until pruned.
func (s *Store) RemoveImage(d digest.Digest) (names []string, found bool, err error) {
	removed, err := s.removeEntries(func(m ocispec.Descriptor) bool { return m.Digest == d })
	for _, m := range removed {
		if n := m.Annotations[RefNameAnnotation]; n != "" {
			names = append(names, n)
		}
	}
	return names, len(removed) > 0, err
}

// RemoveUntagged removes the untagged entry of manifest d, if it still has
// one (a name given to it since it was listed keeps it); it reports whether
// it did. Prune removes dangling images with it.
func (s *Store) RemoveUntagged(d digest.Digest) (bool, error) {
	removed, err := s.removeEntries(func(m ocispec.Descriptor) bool {
		return m.Digest == d && m.Annotations[RefNameAnnotation] == ""
	})
	return len(removed) > 0, err
}

// Untag removes the name; it reports whether it existed. As docker rmi, the
// image goes with its last name (no untagged entry is left); its blobs stay
// until pruned.
func (s *Store) Untag(ref string) (bool, error) {
	n, err := CanonicalName(ref)
	if err != nil {
		return false, err
	}
	removed, err := s.removeEntries(func(m ocispec.Descriptor) bool { return m.Annotations[RefNameAnnotation] == n })
	return len(removed) > 0, err
}

// Lookup finds an image by reference (name or name@digest) or by its full
// ID (IsID), the references a Dockerfile's FROM and COPY --from take.
func (s *Store) Lookup(ref string) (Image, bool, error) {
	if IsID(ref) {
		hexRef, _ := hexID(ref)
		return s.byID(hexRef, true)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return Image{}, false, fmt.Errorf("invalid image name %q: %w", ref, err)
	}
	imgs, err := s.AllImages()
	if err != nil {
		return Image{}, false, err
	}
	if d, ok := r.(name.Digest); ok {
		for _, im := range imgs {
			if im.Descriptor.Digest.String() == d.DigestStr() {
				return im, true, nil
			}
		}
		if dg := digestOf(d.DigestStr()); s.HasBlob(dg) {
			return Image{Name: canonical(r), Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: dg, Size: s.blobSize(dg)}}, true, nil
		}
		return Image{}, false, nil
	}
	for _, im := range imgs {
		if im.Name != "" && im.Name == canonical(r) {
			return im, true, nil
		}
	}
	return Image{}, false, nil
}

// Images lists the named images, sorted by name (an image with two names
// is listed twice).
func (s *Store) Images() ([]Image, error) {
	all, err := s.AllImages()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, im := range all {
		if im.Name != "" {
			out = append(out, im)
		}
	}
	return out, nil
}

// AllImages lists the named images, sorted by name, then the untagged
// ones (Name ""), by manifest digest.
func (s *Store) AllImages() ([]Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, m := range idx.Manifests {
		d := m
		d.Annotations = nil
		out = append(out, Image{Name: m.Annotations[RefNameAnnotation], Descriptor: d})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Name == "") != (out[j].Name == "") {
			return out[j].Name == ""
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Descriptor.Digest < out[j].Descriptor.Digest
	})
	return out, nil
}

// ImageID returns the ID of the image whose manifest is d: the digest of
// its config, as docker names images; of an image index (a multi-platform
// image), its own digest, as docker's containerd store names them.
func (s *Store) ImageID(d digest.Digest) (digest.Digest, error) {
	raw, err := s.ReadBlob(d)
	if err != nil {
		return "", err
	}
	var m manifestJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("manifest %s: %w", d, err)
	}
	if m.isIndex() {
		return d, nil
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return "", fmt.Errorf("manifest %s: config digest: %w", d, err)
	}
	return m.Config.Digest, nil
}

// Resolve finds an image as docker does wherever a command names one: by
// ID (the config digest, "sha256:HEX" or HEX) or manifest digest, by name
// or NAME@DIGEST, or by a prefix of at least MinShortID hex digits of its
// ID. A name comes before a short ID that reads the same ("cafe"). Errors
// wrap ErrNoSuchImage or ErrAmbiguousID.
func (s *Store) Resolve(ref string) (Image, error) {
	hexRef, isHex := hexID(ref)
	im, ok, err := s.Lookup(ref) // a full ID, a name, NAME@DIGEST
	switch {
	case err == nil && ok:
		return im, nil
	case err != nil && !isHex:
		return Image{}, err
	}
	if isHex && len(hexRef) >= MinShortID {
		if im, ok, err := s.byID(hexRef, false); err != nil || ok {
			return im, err
		}
	}
	return Image{}, fmt.Errorf("%w: %s", ErrNoSuchImage, ref)
}

// IsID reports whether ref is a full image ID: "sha256:" and 64 hex
// digits, or the 64 digits alone. Such a reference names a local image
// only (it is never pulled).
func IsID(ref string) bool {
	h, ok := hexID(ref)
	return ok && len(h) == 64 && (len(ref) == 64 || strings.HasPrefix(ref, "sha256:"))
}

// hexID returns ref without "sha256:", lowercased, and whether it is hex.
func hexID(ref string) (string, bool) {
	h := strings.ToLower(strings.TrimPrefix(ref, "sha256:"))
	if h == "" || len(h) > 64 {
		return h, false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return h, false
		}
	}
	return h, true
}

// byID finds the image whose ID starts with (full: is) hexRef, or whose
// manifest digest is hexRef when full. Several manifests with one config
// are one image: the first entry (a named one) is returned.
func (s *Store) byID(hexRef string, full bool) (Image, bool, error) {
	imgs, err := s.AllImages()
	if err != nil {
		return Image{}, false, err
	}
	var found Image
	var foundID digest.Digest
	for _, im := range imgs {
		if full && im.Descriptor.Digest.Encoded() == hexRef {
			return im, true, nil
		}
		id, err := s.ImageID(im.Descriptor.Digest)
		if err != nil {
			continue // fsck reports it
		}
		if full && id.Encoded() != hexRef || !strings.HasPrefix(id.Encoded(), hexRef) {
			continue
		}
		if foundID != "" && foundID != id {
			return Image{}, false, fmt.Errorf("%w: %s is the start of more than one image ID (%s, %s); give more digits", ErrAmbiguousID, hexRef, foundID.Encoded()[:12], id.Encoded()[:12])
		}
		if foundID == "" {
			found, foundID = im, id
		}
	}
	return found, foundID != "", nil
}
