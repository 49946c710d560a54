// Package export writes stored images out: `docker save` archives, OCI image
// layout archives, and OCI layout directories.
package export

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/store"
)

// Docker writes img as a `docker save` archive tagged with the names (none: untagged).
func Docker(w io.Writer, s *store.Store, img *image.Image, names []string) error {
	vimg, err := img.V1(s)
	if err != nil {
		return err
	}
	refs := map[name.Reference]v1.Image{}
	for _, n := range names {
		t, err := name.NewTag(n)
		if err != nil {
			return fmt.Errorf("docker archive name %q: %w", n, err)
		}
		refs[t] = vimg
	}
	if len(refs) == 0 {
		d, err := name.NewDigest("strata/untagged@" + img.Descriptor.Digest.String())
		if err != nil {
			return err
		}
		refs[d] = vimg
	}
	if err := tarball.MultiRefWrite(refs, w); err != nil {
		return fmt.Errorf("write docker archive: %w", err)
	}
	return nil
}

// OCI writes img as an OCI image layout archive (what `docker buildx
// --output type=oci` writes); names become org.opencontainers.image.ref.name
// annotations (the tag) and io.containerd.image.name (the full name).
func OCI(w io.Writer, s *store.Store, img *image.Image, names []string) error {
	return ociArchive(w, s, img.Descriptor, []*image.Image{img}, names)
}

// OCIIndex writes an OCI image layout archive of the image index idx (a
// multi-platform image): index.json names the index, as BuildKit's oci
// exporter does, and the blobs are the index's and its images'.
func OCIIndex(w io.Writer, s *store.Store, idx *image.Index, names []string) error {
	return ociArchive(w, s, idx.Descriptor, idx.Images, names)
}

// ociArchive writes an OCI layout archive whose index.json names top (an
// image manifest, or an index of imgs) under names, with the blobs of top
// and of imgs.
func ociArchive(w io.Writer, s *store.Store, top ocispec.Descriptor, imgs []*image.Image, names []string) error {
	tw := tar.NewWriter(w)
	now := time.Unix(0, 0)
	writeFile := func(p string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: now}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	writeBlob := func(d string, size int64) error {
		f, err := image.OpenVerified(s, digestOf(d), size)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + d[len("sha256:"):], Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: now}); err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		return err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: now}); err != nil {
			return err
		}
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err := writeFile("oci-layout", layout); err != nil {
		return err
	}
	ib := layoutIndex(top, names)
	if err := writeFile("index.json", ib); err != nil {
		return err
	}
	seen := map[string]bool{}
	blob := func(d string, size int64) error {
		if seen[d] {
			return nil
		}
		seen[d] = true
		return writeBlob(d, size)
	}
	if err := blob(top.Digest.String(), top.Size); err != nil {
		return err
	}
	for _, img := range imgs {
		if err := blob(img.Descriptor.Digest.String(), img.Descriptor.Size); err != nil {
			return err
		}
		if err := blob(img.Manifest.Config.Digest.String(), img.Manifest.Config.Size); err != nil {
			return err
		}
		for _, l := range img.Layers {
			if err := blob(l.Digest.String(), l.Size); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write OCI archive: %w", err)
	}
	return nil
}

// layoutIndex is the index.json of an OCI layout that names top under
// names (as containerd and BuildKit annotate them), or holds it unnamed.
func layoutIndex(top ocispec.Descriptor, names []string) []byte {
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	desc := ocispec.Descriptor{MediaType: top.MediaType, Digest: top.Digest, Size: top.Size}
	if len(names) == 0 {
		idx.Manifests = append(idx.Manifests, desc)
	}
	for _, n := range names {
		d := desc
		d.Annotations = map[string]string{"io.containerd.image.name": n}
		if t, err := name.NewTag(n); err == nil {
			d.Annotations[ocispec.AnnotationRefName] = t.TagStr()
			if c, err := store.CanonicalName(t.Name()); err == nil {
				d.Annotations["io.containerd.image.name"] = c
			}
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	ib, _ := json.Marshal(idx)
	return ib
}
