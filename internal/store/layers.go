package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// LayerDir returns the directory holding the unpacked layer with the given
// diffID (which may not exist yet).
func (s *Store) LayerDir(diffID digest.Digest) string {
	return filepath.Join(s.root, "layers", diffID.Encoded())
}

// HasLayer reports whether the layer diffID is unpacked.
func (s *Store) HasLayer(diffID digest.Digest) bool {
	_, err := os.Stat(s.LayerDir(diffID))
	return err == nil
}

// AdoptLayerDir moves dir (an overlay upperdir in lowerdir form) into the store
// as the unpacked layer diffID. When another build got there first, dir is
// removed and the existing layer kept.
func (s *Store) AdoptLayerDir(diffID digest.Digest, dir string) error {
	dst := s.LayerDir(diffID)
	if err := os.Rename(dir, dst); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, unixENOTEMPTY) {
			return os.RemoveAll(dir)
		}
		return fmt.Errorf("store layer %s: %w", diffID, err)
	}
	return nil
}

// UnpackFunc extracts the layer blob into an empty directory and returns the
// diffID it computed while reading.
type UnpackFunc func(ctx context.Context, dir string, blob *os.File) (digest.Digest, error)

// EnsureLayer makes sure the layer diffID, stored compressed as blob, is
// unpacked, extracting it with unpack if needed. The extraction happens in a
// temp directory and is moved into place only when complete and verified.
func (s *Store) EnsureLayer(ctx context.Context, diffID, blob digest.Digest, unpack UnpackFunc) (string, error) {
	dst := s.LayerDir(diffID)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	f, err := s.OpenBlob(blob)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tmp, err := os.MkdirTemp(s.Path("tmp"), s.owner+"layer-")
	if err != nil {
		return "", fmt.Errorf("unpack layer %s: %w", diffID, err)
	}
	got, err := unpack(ctx, tmp, f)
	if err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("unpack layer %s: %w", blob, err)
	}
	if got != diffID {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("unpack layer %s: content has diffID %s, the image config says %s", blob, got, diffID)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("unpack layer %s: %w", blob, err)
	}
	if err := s.AdoptLayerDir(diffID, tmp); err != nil {
		return "", err
	}
	return dst, nil
}
