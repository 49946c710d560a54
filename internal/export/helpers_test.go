package export

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// testImage stores a one-layer image holding /hello in a new store.
func testImage(t *testing.T) (*store.Store, *image.Image) {
	t.Helper()
	dir := t.TempDir()
	s, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	blob, _, err := layer.Commit(context.Background(), root, w, layer.Gzip, layer.DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Commit(blob.Digest); err != nil {
		t.Fatal(err)
	}
	cfg := v1.ConfigFile{OS: "linux", Architecture: "amd64"}
	cfg.History = []v1.History{{CreatedBy: "test"}}
	img, err := image.Write(s, cfg, []image.Layer{{Digest: blob.Digest, DiffID: blob.DiffID, Size: blob.Size, MediaType: blob.MediaType}})
	if err != nil {
		t.Fatal(err)
	}
	return s, img
}
