package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// layerFiles lists the member names of img's only layer, read back from its blob.
func layerFiles(t *testing.T, s *store.Store, img *image.Image) []string {
	t.Helper()
	if len(img.Layers) != 1 {
		t.Fatalf("%d layers, want 1", len(img.Layers))
	}
	f, err := s.OpenBlob(img.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := layer.Decompress(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var names []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

func TestImportDirectory(t *testing.T) {
	s := openTestStore(t)
	src := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("box\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(1700000000, 0).UTC()
	plat := v1.Platform{OS: "linux", Architecture: "riscv64"}
	img, err := Import(context.Background(), s, src, ImportOptions{
		Platform: plat,
		Epoch:    &epoch,
		Change:   func(cfg *v1.ConfigFile) error { cfg.Config.Cmd = []string{"sh"}; return nil },
		Name:     "imported:1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := layerFiles(t, s, img); !slices.Equal(got, []string{"etc/", "etc/hostname"}) {
		t.Errorf("layer holds %q", got)
	}
	c := img.Config
	if c.OS != "linux" || c.Architecture != "riscv64" || !c.Created.Equal(epoch) || !slices.Equal(c.Config.Cmd, []string{"sh"}) {
		t.Errorf("config: os %s arch %s created %s cmd %q", c.OS, c.Architecture, c.Created, c.Config.Cmd)
	}
	if len(c.History) != 1 || c.History[0].CreatedBy != "strata import" || c.History[0].Comment != "Imported from rootfs" || !c.History[0].Created.Equal(epoch) {
		t.Errorf("history %+v", c.History)
	}
	im, ok, err := s.Lookup("imported:1")
	if err != nil || !ok || im.Descriptor.Digest != img.Descriptor.Digest {
		t.Errorf("Lookup(imported:1) = %v, %v, %v", im.Descriptor.Digest, ok, err)
	}
	// The same tree and epoch give the same image.
	again, err := Import(context.Background(), s, src, ImportOptions{Platform: plat, Epoch: &epoch, Change: func(cfg *v1.ConfigFile) error { cfg.Config.Cmd = []string{"sh"}; return nil }})
	if err != nil || again.Descriptor.Digest != img.Descriptor.Digest {
		t.Errorf("second import: %v, %v; want %s", again.Descriptor.Digest, err, img.Descriptor.Digest)
	}
}

func TestImportTarball(t *testing.T) {
	s := openTestStore(t)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, name := range []string{"bin/", "bin/sh"} {
		h := &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}
		if name == "bin/sh" {
			h = &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: 2}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("#!"))
		}
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	src := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	if err := os.WriteFile(src, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	img, err := Import(context.Background(), s, src, ImportOptions{Message: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	// The tarball is the layer as it is: its diffID is the uncompressed tar's digest.
	if want := fmt.Sprintf("sha256:%x", sha256.Sum256(raw.Bytes())); img.Layers[0].DiffID.String() != want {
		t.Errorf("diffID %s, want %s", img.Layers[0].DiffID, want)
	}
	if got := layerFiles(t, s, img); !slices.Equal(got, []string{"bin/", "bin/sh"}) {
		t.Errorf("layer holds %q", got)
	}
	if h := img.Config.History; len(h) != 1 || h[0].Comment != "hello" || h[0].Created.Before(before) {
		t.Errorf("history %+v", h)
	}
	all, err := s.AllImages()
	if err != nil || !slices.ContainsFunc(all, func(im store.Image) bool { return im.Descriptor.Digest == img.Descriptor.Digest && im.Name == "" }) {
		t.Errorf("untagged import not in the store: %v, %v", all, err)
	}
	if _, err := Import(context.Background(), s, filepath.Join(t.TempDir(), "missing"), ImportOptions{}); err == nil {
		t.Error("import of a missing file: want an error")
	}
}
