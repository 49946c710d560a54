// Package archive loads image archives into the store, all or nothing, as
// `docker load` does: `docker save` archives (manifest.json) and OCI image
// layout archives (oci-layout, index.json, blobs/). Every layer is checked
// against the digest its image config gives it (rootfs.diff_ids), every blob
// named by a digest against that digest, and every OCI layer against its
// media type, before any blob is moved into the store or any name is tagged.
package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// Loaded is one image loaded from an archive.
type Loaded struct {
	Image *image.Image
	Tags  []string // its names in the archive, as written there (docker) or in docker's short form (OCI)
	// Warnings name what of the archive's names for the image could not be
	// used, and why.
	Warnings []string
}

// Load reads the archive at path into s and tags its images. It reads
// docker archives (any of the layouts docker and go-containerregistry write:
// ID/layer.tar, HEX.tar.gz, blobs/sha256/HEX) and OCI image layout archives;
// an archive with both (what `docker save` writes since Docker 25) is read
// as an OCI layout, as docker's containerd image store does, so manifests
// keep their digests, unless its index.json misses images or names that its
// manifest.json has. From an OCI image index, the image for platform is
// loaded (the store holds image manifests, not indexes). When any image in
// the archive is damaged, nothing is written and the error names the archive
// and the member at fault.
func Load(ctx context.Context, s *store.Store, path string, platform v1.Platform) ([]Loaded, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	ti, err := indexTar(f)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	st := &staging{s: s, blobs: map[digest.Digest]*store.BlobWriter{}}
	defer st.discard()
	imgs, err := st.read(ctx, ti, platform)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w; nothing was loaded", path, err)
	}
	return st.commit(imgs)
}

// read verifies the images of the archive and stages their layers. An
// archive with both an OCI layout and a manifest.json (docker save since
// Docker 25) is read as an OCI layout when its index.json names every image
// and name that manifest.json does; else by its manifest.json.
func (st *staging) read(ctx context.Context, ti *tarIndex, platform v1.Platform) ([]stagedImage, error) {
	oci, docker := ti.has(ocispec.ImageLayoutFile), ti.has(dockerManifest)
	if oci {
		r := &ociReader{ti: ti, platform: platform}
		imgs, err := r.images()
		if !docker {
			if err != nil {
				return nil, err
			}
			return st.oci(ctx, r, imgs)
		}
		if err == nil {
			var m tarball.Manifest
			if merr := ti.readJSON(dockerManifest, &m); merr != nil || covers(imgs, m) {
				return st.oci(ctx, r, imgs)
			}
		}
	}
	if docker {
		return st.docker(ctx, ti)
	}
	return nil, fmt.Errorf("neither %s (a docker archive) nor %s (an OCI image layout) is in it", dockerManifest, ocispec.ImageLayoutFile)
}

// dockerManifest is the file that lists a docker archive's images.
const dockerManifest = "manifest.json"

// docker verifies the images of a docker archive and stages their layers.
func (st *staging) docker(ctx context.Context, ti *tarIndex) ([]stagedImage, error) {
	var m tarball.Manifest
	if err := ti.readJSON(dockerManifest, &m); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%s lists no images", dockerManifest)
	}
	r := &dockerReader{ti: ti, layers: map[section]dockerLayer{}}
	imgs := make([]stagedImage, 0, len(m))
	for i, desc := range m {
		img, err := st.dockerImage(ctx, r, desc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", imageLabel(i, desc), err)
		}
		imgs = append(imgs, img)
	}
	return imgs, nil
}

func imageLabel(i int, desc tarball.Descriptor) string {
	if len(desc.RepoTags) > 0 {
		return "image " + desc.RepoTags[0]
	}
	return fmt.Sprintf("image %d of manifest.json", i+1)
}

// stagedImage is a verified image whose layers wait in staging.
type stagedImage struct {
	config, manifest []byte
	tags             []string
	warnings         []string
}

// staging holds the verified layer blobs that are not yet in the store, in
// temp files, until every image of the archive is verified.
type staging struct {
	s     *store.Store
	blobs map[digest.Digest]*store.BlobWriter
}

// dockerReader reads the images of a docker archive.
type dockerReader struct {
	ti *tarIndex
	// layers are the layer members verified so far: images of an
	// archive share layers, which are read once.
	layers map[section]dockerLayer
}

// dockerLayer is a verified layer of a docker archive.
type dockerLayer struct {
	diffID digest.Digest
	desc   v1.Descriptor // in the image manifest
}

// dockerImage verifies the image of a docker archive that the manifest.json
// entry desc describes and stages its layers. Its image manifest is the one
// go-containerregistry's tarball reader makes: docker schema 2, with each
// layer as it is in the archive when it is gzip (or zstd) compressed, and
// gzip-compressed when it is not.
func (st *staging) dockerImage(ctx context.Context, r *dockerReader, desc tarball.Descriptor) (stagedImage, error) {
	// A name Docker's grammar rejects is not used, as in OCI archives.
	var tags, warnings []string
	for _, t := range desc.RepoTags {
		if _, err := name.NewTag(t); err != nil {
			warnings = append(warnings, fmt.Sprintf("the name %q (RepoTags) is not an image reference; the image is loaded without it", t))
			continue
		}
		if _, err := store.CanonicalName(t); err != nil {
			warnings = append(warnings, fmt.Sprintf("the name %q (RepoTags): %v; the image is loaded without it", t, err))
			continue
		}
		tags = append(tags, t)
	}
	cfgRaw, err := r.ti.readFile(desc.Config)
	if err != nil {
		return stagedImage{}, fmt.Errorf("config: %w", err)
	}
	cfgDigest := digest.FromBytes(cfgRaw)
	if want, ok := namedDigest(desc.Config); ok && cfgDigest != want {
		return stagedImage{}, fmt.Errorf("config %s: content hashes to %s, not to the digest in its name", desc.Config, cfgDigest)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return stagedImage{}, fmt.Errorf("config %s: %w", desc.Config, err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(desc.Layers) != len(diffIDs) {
		return stagedImage{}, fmt.Errorf("manifest.json lists %d layers but the config %s has %d diff_ids", len(desc.Layers), desc.Config, len(diffIDs))
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.DockerManifestSchema2,
		Config:        v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(cfgRaw)), Digest: hash(cfgDigest)},
		Layers:        make([]v1.Descriptor, 0, len(desc.Layers)),
	}
	for i, member := range desc.Layers {
		if err := ctx.Err(); err != nil {
			return stagedImage{}, err
		}
		l, err := st.dockerLayer(ctx, r, member, digest.Digest(diffIDs[i].String()))
		if err != nil {
			return stagedImage{}, fmt.Errorf("layer %d of %d (%s in the archive): %w", i+1, len(desc.Layers), member, err)
		}
		m.Layers = append(m.Layers, l)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return stagedImage{}, fmt.Errorf("manifest: %w", err)
	}
	return stagedImage{config: cfgRaw, manifest: raw, tags: tags, warnings: warnings}, nil
}

// dockerLayer verifies and stages the layer member of a docker archive,
// whose uncompressed content must have diffID, and returns its descriptor.
// A member named by digest must have that digest, compressed or not.
func (st *staging) dockerLayer(ctx context.Context, r *dockerReader, member string, diffID digest.Digest) (v1.Descriptor, error) {
	s, ok := r.ti.lookup(member)
	if !ok {
		return v1.Descriptor{}, errors.New("not in the archive")
	}
	if l, ok := r.layers[s]; ok {
		if l.diffID != diffID {
			return v1.Descriptor{}, diffIDMismatch(l.diffID, diffID)
		}
		return l.desc, nil
	}
	head := make([]byte, len(zstdMagic))
	n, err := r.ti.open(s).ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return v1.Descriptor{}, err
	}
	lb := layerBlob{member: member, diffID: diffID, open: func() (io.ReadCloser, error) { return io.NopCloser(r.ti.open(s)), nil }}
	var desc v1.Descriptor
	switch c := sniff(head[:n]); c {
	case layer.Gzip, layer.Zstd:
		d, err := st.layer(lb)
		if err != nil {
			return v1.Descriptor{}, err
		}
		mt := types.DockerLayer
		if c == layer.Zstd {
			mt = types.OCILayerZStd
		}
		desc = v1.Descriptor{MediaType: mt, Size: s.size, Digest: hash(d)}
	default:
		b, err := st.compress(ctx, lb)
		if err != nil {
			return v1.Descriptor{}, err
		}
		desc = v1.Descriptor{MediaType: types.DockerLayer, Size: b.Size, Digest: hash(b.Digest)}
	}
	r.layers[s] = dockerLayer{diffID: diffID, desc: desc}
	return desc, nil
}

// hash is d as go-containerregistry spells a digest.
func hash(d digest.Digest) v1.Hash {
	return v1.Hash{Algorithm: d.Algorithm().String(), Hex: d.Encoded()}
}

// layerBlob is a layer blob of an archive to verify and stage.
type layerBlob struct {
	member string // its name in the archive
	// digest of its bytes, from an OCI manifest; empty for docker archives,
	// which give none: it is what the bytes hash to.
	digest digest.Digest
	diffID digest.Digest // of its uncompressed tar, as the image config says
	// mediaType and the compression it means, from an OCI manifest; empty
	// for docker archives, which give none.
	mediaType   string
	compression layer.Compression
	open        func() (io.ReadCloser, error)
}

// layer reads the blob lb once: it goes to a temp file (unless the store or
// staging has it already) while it is decompressed and hashed, and the
// result must match lb's digest, diffID and compression. It returns the
// blob's digest.
func (st *staging) layer(lb layerBlob) (digest.Digest, error) {
	rc, err := lb.open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var dst io.Writer = io.Discard
	var w *store.BlobWriter
	kept := false
	if lb.digest == "" || !st.has(lb.digest) {
		if w, err = st.s.NewBlobWriter(); err != nil {
			return "", err
		}
		defer func() {
			if !kept {
				w.Close()
			}
		}()
		dst = w
	}
	blobHash, diffHash := digest.SHA256.Digester(), digest.SHA256.Digester()
	br := bufio.NewReader(io.TeeReader(rc, io.MultiWriter(dst, blobHash.Hash())))
	if lb.compression != "" {
		head, _ := br.Peek(len(zstdMagic))
		if got := sniff(head); got != lb.compression && (got != "" || lb.compression != layer.Uncompressed) {
			return "", fmt.Errorf("media type %s says %s, but the blob is %s", lb.mediaType, lb.compression, describe(got))
		}
	}
	dr, err := layer.Decompress(br)
	if err == nil {
		_, err = io.Copy(diffHash.Hash(), dr)
		dr.Close()
	}
	// What the decompressor did not read (padding after the stream, or
	// the rest of a stream it could not read) is still part of the blob.
	if _, cerr := io.Copy(io.Discard, br); cerr != nil {
		return "", cerr
	}
	// A blob that is not what its digest says is the fault to report,
	// rather than what it made the decompressor find.
	blob := blobHash.Digest()
	if lb.digest != "" && blob != lb.digest {
		return "", fmt.Errorf("content hashes to %s, not %s", blob, lb.digest)
	}
	if err != nil {
		return "", fmt.Errorf("decompress: %w", err)
	}
	got := diffHash.Digest()
	if got != lb.diffID {
		return "", diffIDMismatch(got, lb.diffID)
	}
	if lb.compression == layer.Uncompressed && blob != got {
		return "", fmt.Errorf("media type %s says uncompressed, but the blob is compressed (its digest is not its diffID)", lb.mediaType)
	}
	if named, ok := namedDigest(lb.member); ok && named != got && named != blob {
		return "", fmt.Errorf("content hashes to %s (uncompressed %s), not to the digest in its name", blob, got)
	}
	kept = st.keep(blob, w)
	return blob, nil
}

// compress verifies the uncompressed layer lb (the layers of a docker
// archive are, since Docker 25 and before Docker 1.10) and stages it gzip
// compressed, as `strata import` stores a tar.
func (st *staging) compress(ctx context.Context, lb layerBlob) (layer.Blob, error) {
	rc, err := lb.open()
	if err != nil {
		return layer.Blob{}, err
	}
	defer rc.Close()
	w, err := st.s.NewBlobWriter()
	if err != nil {
		return layer.Blob{}, err
	}
	kept := false
	defer func() {
		if !kept {
			w.Close()
		}
	}()
	b, err := layer.Compress(ctx, rc, w, layer.Gzip)
	if err != nil {
		return layer.Blob{}, err
	}
	if b.DiffID != lb.diffID {
		return layer.Blob{}, diffIDMismatch(b.DiffID, lb.diffID)
	}
	if named, ok := namedDigest(lb.member); ok && named != b.DiffID {
		return layer.Blob{}, fmt.Errorf("content hashes to %s, not to the digest in its name", b.DiffID)
	}
	kept = st.keep(b.Digest, w)
	return b, nil
}

func diffIDMismatch(got, want digest.Digest) error {
	return fmt.Errorf("uncompressed content has diffID %s, but the image config's rootfs.diff_ids say %s", got, want)
}

// has reports whether the blob d is in the store or staged.
func (st *staging) has(d digest.Digest) bool {
	_, staged := st.blobs[d]
	return staged || st.s.HasBlob(d)
}

// keep stages w, a temp file of the verified blob d, unless the store or
// staging has d already (or w is nil); it reports whether it did.
func (st *staging) keep(d digest.Digest, w *store.BlobWriter) bool {
	if w == nil || st.has(d) {
		return false
	}
	st.blobs[d] = w
	return true
}

// The magic numbers that open a gzip stream (RFC 1952) and a zstd frame
// (RFC 8878).
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// sniff names the compression of a blob by its first bytes: gzip, zstd, or
// "" for anything else.
func sniff(head []byte) layer.Compression {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return layer.Gzip
	case bytes.HasPrefix(head, zstdMagic):
		return layer.Zstd
	}
	return ""
}

func describe(c layer.Compression) string {
	if c == "" {
		return "not gzip or zstd compressed"
	}
	return string(c) + " compressed"
}

// commit moves the staged blobs into the store, writes each image's config
// and manifest, then records all the images with their names in one edit of
// the store's index: the archive's names appear all together, or (on an
// error) none of them.
func (st *staging) commit(imgs []stagedImage) ([]Loaded, error) {
	for d, w := range st.blobs {
		if _, _, err := w.Commit(d); err != nil {
			return nil, err
		}
	}
	out := make([]Loaded, 0, len(imgs))
	var records []store.Image
	for _, si := range imgs {
		if _, err := st.s.PutBlob(si.config); err != nil {
			return nil, err
		}
		md, err := st.s.PutBlob(si.manifest)
		if err != nil {
			return nil, err
		}
		img, err := image.Load(st.s, md)
		if err != nil {
			return nil, err
		}
		for _, t := range si.tags {
			records = append(records, store.Image{Name: t, Descriptor: img.Descriptor})
		}
		if len(si.tags) == 0 {
			// an untagged image is still an image: usable by its ID
			records = append(records, store.Image{Descriptor: img.Descriptor})
		}
		out = append(out, Loaded{Image: img, Tags: si.tags, Warnings: si.warnings})
	}
	if err := st.s.Record(records); err != nil {
		return nil, err
	}
	return out, nil
}

// discard removes the temp files of blobs not committed.
func (st *staging) discard() {
	for _, w := range st.blobs {
		w.Close()
	}
}

// digestName matches the archive member names that are content digests:
// blobs/sha256/HEX (docker 25 and later), HEX.json (the config, in older
// docker), sha256:HEX and HEX.tar.gz (go-containerregistry).
var digestName = regexp.MustCompile(`^(?:sha256:)?([0-9a-f]{64})(?:\.json|\.tar|\.tar\.gz)?$`)

// namedDigest returns the digest an archive member's name gives its content.
// Older docker's layers (ID/layer.tar) are named by an ID, not a digest.
func namedDigest(member string) (digest.Digest, bool) {
	m := digestName.FindStringSubmatch(path.Base(member))
	if m == nil {
		return "", false
	}
	return digest.NewDigestFromEncoded(digest.SHA256, m[1]), true
}
