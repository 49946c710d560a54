package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// containerdImageName is the index.json annotation with an image's full
// name, which containerd, BuildKit and docker write beside
// org.opencontainers.image.ref.name (which they give the tag alone).
const containerdImageName = "io.containerd.image.name"

// maxJSON bounds the manifests, indexes and configs read into memory.
const maxJSON = 64 << 20

// maxDescriptors bounds the manifests and indexes an OCI layout archive's
// index.json and the image indexes it names may list, all together: a walk
// of them reads each index once, but a hostile archive could list more than
// any real one would.
const maxDescriptors = 10000

// maxOthers is how many platforms not chosen an error names.
const maxOthers = 16

// layerCompression returns the compression a layer media type says its
// blob has; ok is false for the media types Load does not accept.
func layerCompression(mediaType string) (_ layer.Compression, ok bool) {
	switch mediaType {
	case ocispec.MediaTypeImageLayer, string(types.DockerUncompressedLayer):
		return layer.Uncompressed, true
	case ocispec.MediaTypeImageLayerGzip, string(types.DockerLayer):
		return layer.Gzip, true
	case ocispec.MediaTypeImageLayerZstd:
		return layer.Zstd, true
	}
	return "", false
}

// ociReader reads an OCI image layout from a tar archive.
type ociReader struct {
	ti       *tarIndex
	platform v1.Platform
	// chosen is what choose found in each image index it read: an index
	// named again (at any depth, from any entry) is not read again.
	chosen  map[digest.Digest]choice
	visited int // descriptors choose was given, up to maxDescriptors
	// others are the platforms of the images not chosen, for errors: each
	// once, in the order met.
	others    []string
	hasOthers map[string]bool
}

// choice is what choose found for a descriptor.
type choice struct {
	desc ocispec.Descriptor
	ok   bool
}

// ociImage is an image of an OCI layout archive chosen to load: its
// manifest, read and checked against its digest, and its names.
type ociImage struct {
	label    string // for errors
	member   string // the manifest's
	raw      []byte
	manifest ocispec.Manifest
	tags     []string
	warnings []string
}

// images reads an OCI layout archive's index.json and chooses the images
// to load. An entry of index.json may be an image manifest or an image index
// (nested up to 8 deep), from which the image for r.platform is chosen;
// entries for other platforms are passed over, as containerd's import does.
func (r *ociReader) images() ([]*ociImage, error) {
	var layout ocispec.ImageLayout
	if err := r.ti.readJSON(ocispec.ImageLayoutFile, &layout); err != nil {
		return nil, err
	}
	if layout.Version != ocispec.ImageLayoutVersion {
		return nil, fmt.Errorf("%s: imageLayoutVersion %q, but strata reads %s", ocispec.ImageLayoutFile, layout.Version, ocispec.ImageLayoutVersion)
	}
	var idx ocispec.Index
	if err := r.ti.readJSON(ocispec.ImageIndexFile, &idx); err != nil {
		return nil, err
	}
	if len(idx.Manifests) == 0 {
		return nil, fmt.Errorf("%s lists no images", ocispec.ImageIndexFile)
	}
	var imgs []*ociImage
	byDigest := map[digest.Digest]*ociImage{}
	for i, entry := range idx.Manifests {
		n, warning := imageName(entry.Annotations)
		label := fmt.Sprintf("%s entry %d", ocispec.ImageIndexFile, i+1)
		if n != "" {
			label = "image " + n
		}
		desc, ok, err := r.choose(entry, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		if !ok {
			continue
		}
		img := byDigest[desc.Digest]
		if img == nil {
			img, err = r.manifest(desc)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", label, err)
			}
			img.label = label
			byDigest[desc.Digest] = img
			imgs = append(imgs, img)
		}
		if n != "" && !slices.Contains(img.tags, n) {
			img.tags = append(img.tags, n)
		}
		if warning != "" {
			img.warnings = append(img.warnings, warning)
		}
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("no image for %s in %s (%s)", r.platform, ocispec.ImageIndexFile, r.describeOthers())
	}
	return imgs, nil
}

// passOver records the platform p of an image not chosen.
func (r *ociReader) passOver(p v1.Platform) {
	s := p.String()
	if r.hasOthers[s] {
		return
	}
	if r.hasOthers == nil {
		r.hasOthers = map[string]bool{}
	}
	r.hasOthers[s] = true
	r.others = append(r.others, s)
}

// describeOthers names the platforms of the images not chosen: the first
// maxOthers of them.
func (r *ociReader) describeOthers() string {
	if len(r.others) == 0 {
		return "it has no image for any platform"
	}
	s := "it has " + strings.Join(r.others[:min(len(r.others), maxOthers)], ", ")
	if more := len(r.others) - maxOthers; more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// covers reports whether the images chosen from index.json include every
// image of the archive's manifest.json, with all its names. Docker's own
// `docker save` (without the containerd image store) writes index.json
// entries only for the names it saves (none when an image is saved by
// digest, moby/moby#47210, #51389), and manifest.json for every image.
func covers(imgs []*ociImage, m tarball.Manifest) bool {
	for _, d := range m {
		cfg, ok := namedDigest(d.Config)
		if !ok {
			return false
		}
		i := slices.IndexFunc(imgs, func(img *ociImage) bool { return img.manifest.Config.Digest == cfg })
		if i < 0 {
			return false
		}
		var names []string
		for _, t := range imgs[i].tags {
			if c, err := store.CanonicalName(t); err == nil {
				names = append(names, c)
			}
		}
		for _, t := range d.RepoTags {
			if c, err := store.CanonicalName(t); err != nil || !slices.Contains(names, c) {
				return false
			}
		}
	}
	return true
}

// oci verifies the chosen images of an OCI layout archive and stages their
// layers.
func (st *staging) oci(ctx context.Context, r *ociReader, imgs []*ociImage) ([]stagedImage, error) {
	out := make([]stagedImage, 0, len(imgs))
	for _, img := range imgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		si, err := st.verifyOCI(ctx, r, img)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", img.label, err)
		}
		out = append(out, si)
	}
	return out, nil
}

// imageName returns the name docker (with its containerd image store) gives
// the image of an index.json entry: the io.containerd.image.name annotation,
// else org.opencontainers.image.ref.name, read as an image reference (so a
// bare tag "1.0" names the image 1.0:latest), in docker's short form. A name
// that is no image reference is not used: the warning says so.
func imageName(ann map[string]string) (ref, warning string) {
	key := containerdImageName
	n := ann[key]
	if n == "" {
		key = ocispec.AnnotationRefName
		n = ann[key]
	}
	if n == "" {
		return "", ""
	}
	t, err := name.NewTag(n)
	if err != nil {
		return "", fmt.Sprintf("the name %q (annotation %s) is not an image reference; the image is loaded without it", n, key)
	}
	c, err := store.CanonicalName(t.String())
	if err != nil {
		return "", fmt.Sprintf("the name %q (annotation %s): %v; the image is loaded without it", n, key, err)
	}
	return store.FamiliarName(c), ""
}

// choose returns the image manifest to load for desc: desc itself when it
// is one, the one for r.platform when it is an index; ok is false when desc
// is for another platform. An index is read once: what it gave is
// remembered by its digest.
func (r *ociReader) choose(desc ocispec.Descriptor, depth int) (_ ocispec.Descriptor, ok bool, _ error) {
	if r.visited++; r.visited > maxDescriptors {
		return desc, false, fmt.Errorf("more than %d image manifests and indexes in %s and the image indexes it names", maxDescriptors, ocispec.ImageIndexFile)
	}
	if p := desc.Platform; p != nil {
		vp := v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion, OSFeatures: p.OSFeatures}
		if !vp.Satisfies(r.platform) {
			r.passOver(vp)
			return desc, false, nil
		}
	}
	switch {
	case isManifest(desc.MediaType):
		return desc, true, nil
	case !isIndex(desc.MediaType):
		return desc, false, fmt.Errorf("%s has media type %q, not an image manifest or index", blobName(desc.Digest), desc.MediaType)
	case depth >= 8:
		return desc, false, fmt.Errorf("%s: image indexes nested more than 8 deep", blobName(desc.Digest))
	}
	// The blob must be there, of its descriptor's size, whether or not
	// it is read again.
	if _, _, err := r.member(desc); err != nil {
		return desc, false, err
	}
	if c, seen := r.chosen[desc.Digest]; seen {
		return c.desc, c.ok, nil
	}
	d, ok, err := r.chooseIn(desc, depth)
	if err == nil {
		if r.chosen == nil {
			r.chosen = map[digest.Digest]choice{}
		}
		r.chosen[desc.Digest] = choice{d, ok}
	}
	return d, ok, err
}

// chooseIn reads the image index desc and chooses from its children.
func (r *ociReader) chooseIn(desc ocispec.Descriptor, depth int) (_ ocispec.Descriptor, ok bool, _ error) {
	raw, member, err := r.blob(desc)
	if err != nil {
		return desc, false, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return desc, false, fmt.Errorf("%s: image index: %w", member, err)
	}
	// The children for a platform first, then those that name none (which
	// containerd's platform filter lets through too); children that are
	// neither manifests nor indexes (artifacts) are passed over.
	for _, withPlatform := range []bool{true, false} {
		for _, c := range idx.Manifests {
			if (c.Platform != nil) != withPlatform || !isManifest(c.MediaType) && !isIndex(c.MediaType) {
				continue
			}
			d, ok, err := r.choose(c, depth+1)
			if err != nil || ok {
				return d, ok, err
			}
		}
	}
	return desc, false, nil
}

func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == string(types.DockerManifestSchema2)
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == string(types.DockerManifestList)
}

// manifest reads the image manifest desc and checks it against its digest.
func (r *ociReader) manifest(desc ocispec.Descriptor) (*ociImage, error) {
	raw, member, err := r.blob(desc)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: image manifest: %w", member, err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("%s: image manifest schemaVersion %d, not 2", member, m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != desc.MediaType {
		return nil, fmt.Errorf("%s: the manifest's media type %s is not %s, what its descriptor says", member, m.MediaType, desc.MediaType)
	}
	return &ociImage{member: member, raw: raw, manifest: m}, nil
}

// verifyOCI verifies the config and layers of img and stages its layers.
func (st *staging) verifyOCI(ctx context.Context, r *ociReader, img *ociImage) (stagedImage, error) {
	m, member := img.manifest, img.member
	if mt := m.Config.MediaType; mt != ocispec.MediaTypeImageConfig && mt != string(types.DockerConfigJSON) {
		return stagedImage{}, fmt.Errorf("%s: config media type %q is not an image config's", member, mt)
	}
	cfgRaw, cfgMember, err := r.blob(m.Config)
	if err != nil {
		return stagedImage{}, err
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return stagedImage{}, fmt.Errorf("config %s: %w", cfgMember, err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(m.Layers) != len(diffIDs) {
		return stagedImage{}, fmt.Errorf("the manifest %s lists %d layers but the config %s has %d diff_ids", member, len(m.Layers), cfgMember, len(diffIDs))
	}
	for i, l := range m.Layers {
		if err := ctx.Err(); err != nil {
			return stagedImage{}, err
		}
		lb := layerBlob{member: blobName(l.Digest), digest: l.Digest, diffID: digest.Digest(diffIDs[i].String()), mediaType: l.MediaType}
		err := func() error {
			c, ok := layerCompression(l.MediaType)
			if !ok {
				return fmt.Errorf("media type %q is not a layer type strata loads (an OCI or docker layer tar, uncompressed, gzip or zstd)", l.MediaType)
			}
			lb.compression = c
			s, _, err := r.member(l)
			if err != nil {
				return err
			}
			lb.open = func() (io.ReadCloser, error) { return io.NopCloser(r.ti.open(s)), nil }
			_, err = st.layer(lb)
			return err
		}()
		if err != nil {
			return stagedImage{}, fmt.Errorf("layer %d of %d (%s in the archive): %w", i+1, len(m.Layers), lb.member, err)
		}
	}
	return stagedImage{config: cfgRaw, manifest: img.raw, tags: img.tags, warnings: img.warnings}, nil
}

// blobName is the member of an OCI layout that holds the blob d.
func blobName(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// member finds the blob desc in the archive; its size must be desc's.
func (r *ociReader) member(desc ocispec.Descriptor) (section, string, error) {
	if err := desc.Digest.Validate(); err != nil {
		return section{}, "", fmt.Errorf("digest %q: %w", desc.Digest, err)
	}
	if desc.Digest.Algorithm() != digest.SHA256 {
		return section{}, "", fmt.Errorf("digest %s: only sha256 blobs are supported", desc.Digest)
	}
	n := blobName(desc.Digest)
	s, ok := r.ti.lookup(n)
	if !ok {
		return section{}, n, fmt.Errorf("%s is not in the archive", n)
	}
	if s.size != desc.Size {
		return section{}, n, fmt.Errorf("%s is %d bytes, but its descriptor says %d", n, s.size, desc.Size)
	}
	return s, n, nil
}

// blob reads the (small) blob desc and checks it against its digest.
func (r *ociReader) blob(desc ocispec.Descriptor) ([]byte, string, error) {
	s, n, err := r.member(desc)
	if err != nil {
		return nil, n, err
	}
	if s.size > maxJSON {
		return nil, n, fmt.Errorf("%s: %d bytes is too big for a %s", n, s.size, desc.MediaType)
	}
	b, err := io.ReadAll(r.ti.open(s))
	if err != nil {
		return nil, n, fmt.Errorf("%s: %w", n, err)
	}
	if got := digest.FromBytes(b); got != desc.Digest {
		return nil, n, fmt.Errorf("%s: content hashes to %s, not to the digest in its name", n, got)
	}
	return b, n, nil
}
