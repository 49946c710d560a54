// Package archive loads `docker save` archives into the store, all or
// nothing, as `docker load` does: every layer is checked against the digest
// its image config gives it (rootfs.diff_ids), and every member whose name
// is a digest against that digest, before any blob is moved into the store
// or any name is tagged.
package archive

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// Loaded is one image loaded from an archive.
type Loaded struct {
	Image *image.Image
	Tags  []string // the archive's RepoTags for it, as written there
}

// Load reads the docker archive at path (any of the layouts docker and
// go-containerregistry write: ID/layer.tar, HEX.tar.gz, blobs/sha256/HEX)
// into s and tags its images. When any image in it is damaged, nothing is
// written and the error names the archive and the member at fault.
func Load(ctx context.Context, s *store.Store, path string) ([]Loaded, error) {
	open := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(open)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("load %s: manifest.json lists no images", path)
	}
	st := &staging{s: s, blobs: map[digest.Digest]*store.BlobWriter{}}
	defer st.discard()
	imgs := make([]stagedImage, 0, len(m))
	for i, desc := range m {
		img, err := st.image(ctx, open, desc)
		if err != nil {
			return nil, fmt.Errorf("load %s: %s: %w; nothing was loaded", path, imageLabel(i, desc), err)
		}
		imgs = append(imgs, img)
	}
	return st.commit(imgs)
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
}

// staging holds the verified layer blobs that are not yet in the store, in
// temp files, until every image of the archive is verified.
type staging struct {
	s     *store.Store
	blobs map[digest.Digest]*store.BlobWriter
}

// image verifies one image of the archive and stages its layers.
func (st *staging) image(ctx context.Context, open tarball.Opener, desc tarball.Descriptor) (stagedImage, error) {
	var tag *name.Tag
	for _, t := range desc.RepoTags {
		nt, err := name.NewTag(t)
		if err != nil {
			return stagedImage{}, fmt.Errorf("RepoTags: %w", err)
		}
		if tag == nil {
			tag = &nt
		}
	}
	vimg, err := tarball.Image(open, tag)
	if err != nil {
		return stagedImage{}, err
	}
	cfgRaw, err := vimg.RawConfigFile()
	if err != nil {
		return stagedImage{}, fmt.Errorf("config %s: %w", desc.Config, err)
	}
	if want, ok := namedDigest(desc.Config); ok {
		if got := digest.FromBytes(cfgRaw); got != want {
			return stagedImage{}, fmt.Errorf("config %s: content hashes to %s, not to the digest in its name", desc.Config, got)
		}
	}
	cfg, err := vimg.ConfigFile()
	if err != nil {
		return stagedImage{}, fmt.Errorf("config %s: %w", desc.Config, err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(desc.Layers) != len(diffIDs) {
		return stagedImage{}, fmt.Errorf("manifest.json lists %d layers but the config %s has %d diff_ids", len(desc.Layers), desc.Config, len(diffIDs))
	}
	layers, err := vimg.Layers()
	if err != nil {
		return stagedImage{}, err
	}
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return stagedImage{}, err
		}
		// Layers come in the order of manifest.json's list (of the
		// config's diff_ids, which has the same length).
		if err := st.layer(l, desc.Layers[i], diffIDs[i]); err != nil {
			return stagedImage{}, fmt.Errorf("layer %d of %d (%s in the archive): %w", i+1, len(layers), desc.Layers[i], err)
		}
	}
	raw, err := vimg.RawManifest()
	if err != nil {
		return stagedImage{}, fmt.Errorf("manifest: %w", err)
	}
	return stagedImage{config: cfgRaw, manifest: raw, tags: desc.RepoTags}, nil
}

// layer reads l once: its blob goes to a temp file (unless the store or
// staging has it already) while it is decompressed and hashed, and the
// result must match the config's diffID want.
func (st *staging) layer(l v1.Layer, member string, want v1.Hash) error {
	d, err := l.Digest()
	if err != nil {
		return err
	}
	blob := digest.Digest(d.String())
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	var dst io.Writer = io.Discard
	if _, staged := st.blobs[blob]; !staged && !st.s.HasBlob(blob) {
		w, err := st.s.NewBlobWriter()
		if err != nil {
			return err
		}
		st.blobs[blob] = w
		dst = w
	}
	blobHash, diffHash := digest.SHA256.Digester(), digest.SHA256.Digester()
	tee := io.TeeReader(rc, io.MultiWriter(dst, blobHash.Hash()))
	dr, err := layer.Decompress(tee)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	_, err = io.Copy(diffHash.Hash(), dr)
	dr.Close()
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	// What the decompressor did not read (padding after the stream) is
	// still part of the blob.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return err
	}
	if got := blobHash.Digest(); got != blob {
		return fmt.Errorf("content hashes to %s, not %s", got, blob)
	}
	got := diffHash.Digest()
	if got.String() != want.String() {
		return fmt.Errorf("uncompressed content has diffID %s, but the image config's rootfs.diff_ids say %s", got, want)
	}
	if named, ok := namedDigest(member); ok && named != got && named != blob {
		return fmt.Errorf("content hashes to %s (uncompressed %s), not to the digest in its name", blob, got)
	}
	return nil
}

// commit moves the staged blobs into the store, then writes each image's
// config and manifest and tags it.
func (st *staging) commit(imgs []stagedImage) ([]Loaded, error) {
	for d, w := range st.blobs {
		if _, _, err := w.Commit(d); err != nil {
			return nil, err
		}
	}
	out := make([]Loaded, 0, len(imgs))
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
			if err := st.s.Tag(t, img.Descriptor); err != nil {
				return nil, err
			}
		}
		if len(si.tags) == 0 {
			// an untagged image is still an image: usable by its ID
			if err := st.s.AddImage(img.Descriptor); err != nil {
				return nil, err
			}
		}
		out = append(out, Loaded{Image: img, Tags: si.tags})
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
