package testenv

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// Image is an output image read back with go-containerregistry, with what
// tests look at loaded.
type Image struct {
	v1.Image
	Name   string         // an OCI layout's org.opencontainers.image.ref.name, a docker archive's first RepoTag
	Config *v1.ConfigFile // the image config
	Layers [][]tar.Header // each layer's tar headers, lowest layer first
}

// OpenOCIArchive reads the one image of an OCI archive (the tar of an OCI
// image layout), extracting it into the empty folder dir, and returns it
// with its ref.name annotation.
func OpenOCIArchive(archive, dir string) (v1.Image, string, error) {
	if err := UntarPlain(archive, dir); err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return nil, "", fmt.Errorf("%s has no oci-layout file", archive)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", archive, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, "", fmt.Errorf("%s: index.json: %w", archive, err)
	}
	if len(m.Manifests) != 1 {
		return nil, "", fmt.Errorf("%s: index.json has %d manifests, want 1", archive, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", archive, err)
	}
	return img, m.Manifests[0].Annotations["org.opencontainers.image.ref.name"], nil
}

// OpenDockerArchive reads the one image of a `docker save` archive and
// returns it with its first RepoTag ("" when it has none).
func OpenDockerArchive(archive string) (v1.Image, string, error) {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(archive) })
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", archive, err)
	}
	if len(m) != 1 {
		return nil, "", fmt.Errorf("%s: manifest.json has %d images, want 1", archive, len(m))
	}
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", archive, err)
	}
	tag := ""
	if len(m[0].RepoTags) > 0 {
		tag = m[0].RepoTags[0]
	}
	return img, tag, nil
}

// OpenRemote reads the image ref from a registry (plain http allowed).
func OpenRemote(ref string) (v1.Image, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	return remote.Image(r)
}

// Validate checks img with go-containerregistry's validate.Image: the
// manifest, config and every layer match their digests and sizes, and the
// layers their diffIDs.
func Validate(img v1.Image) error { return validate.Image(img) }

// ReadOCIArchive reads and validates the one image of an OCI archive. An
// archive that cannot be read fails t at once, an invalid image fails it.
func ReadOCIArchive(t testing.TB, archive string) Image {
	t.Helper()
	img, ref, err := OpenOCIArchive(archive, t.TempDir())
	return load(t, archive, img, ref, err)
}

// ReadDockerArchive is ReadOCIArchive for a `docker save` archive.
func ReadDockerArchive(t testing.TB, archive string) Image {
	t.Helper()
	img, tag, err := OpenDockerArchive(archive)
	return load(t, archive, img, tag, err)
}

func load(t testing.TB, what string, img v1.Image, name string, err error) Image {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(img); err != nil {
		t.Errorf("%s is not a valid image: %v", what, err)
	}
	out := Image{Image: img, Name: name}
	if out.Config, err = img.ConfigFile(); err != nil {
		t.Fatalf("%s: config: %v", what, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatalf("%s: layers: %v", what, err)
	}
	for i, l := range layers {
		hs, err := LayerHeaders(l)
		if err != nil {
			t.Fatalf("%s: layer %d: %v", what, i+1, err)
		}
		out.Layers = append(out.Layers, hs)
	}
	return out
}

// LayerHeaders lists the tar headers of a layer (decompressed).
func LayerHeaders(l v1.Layer) ([]tar.Header, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var out []tar.Header
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *h)
	}
}

// UntarPlain extracts the folders and regular files of a trusted archive
// (an OCI layout's) into dir; any other entry is an error, and so is an
// archive without index.json.
func UntarPlain(archive, dir string) error {
	fh, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer fh.Close()
	tr := tar.NewReader(fh)
	index := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		clean := path.Clean("/" + hdr.Name)
		target := filepath.Join(dir, filepath.FromSlash(clean))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, b, 0o644); err != nil {
				return err
			}
			index = index || clean == "/index.json"
		default:
			return fmt.Errorf("%s: unexpected entry type %q in the OCI archive", clean, hdr.Typeflag)
		}
	}
	if !index {
		return fmt.Errorf("%s has no index.json", archive)
	}
	return nil
}
