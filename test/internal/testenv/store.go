package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// NewStore makes an empty store folder below the work folder. When t ends
// it is checked (no mounts, runc containers or sessions left: a failure of
// t), released and removed.
func (s *Suite) NewStore(t testing.TB) string {
	t.Helper()
	return s.NewStoreIn(t, "")
}

// NewStoreIn is NewStore with the store in base (the work folder when "").
func (s *Suite) NewStoreIn(t testing.TB, base string) string {
	t.Helper()
	s.RequireBuild(t)
	if base == "" {
		base = s.WorkDir
	}
	dir, err := os.MkdirTemp(base, "store-")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Own(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ReleaseStore(dir); err != nil {
			t.Errorf("store %s was not left clean: %v", dir, err)
		}
	})
	return dir
}

// ImportBusybox imports the suite's busybox root into store as
// busybox:latest, as scripts/make-bases.sh does; env is more environment
// for strata (SOURCE_DATE_EPOCH=... for the same image in every store).
func (s *Suite) ImportBusybox(t testing.TB, store string, env ...string) {
	t.Helper()
	s.MustRun(t, store, RunOpts{Env: env}, ImportArgs(s.BusyboxRoot, "busybox:latest", ImagePATH)...)
}

// NewBusyboxStore is a NewStore holding busybox:latest.
func (s *Suite) NewBusyboxStore(t testing.TB) string {
	t.Helper()
	store := s.NewStore(t)
	s.ImportBusybox(t, store)
	return store
}

// ---- reading a store directly (an OCI image layout) ----

// BlobPath is where store keeps the blob of digest d.
func BlobPath(store, d string) string {
	return filepath.Join(store, "blobs", strings.Replace(d, ":", "/", 1))
}

// ReadBlob reads the blob of digest d from store and checks its digest.
func ReadBlob(store, d string) ([]byte, error) {
	b, err := os.ReadFile(BlobPath(store, d))
	if err != nil {
		return nil, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if h.String() != d {
		return nil, fmt.Errorf("blob %s: content hashes to %s", d, h)
	}
	return b, nil
}

// StoreIndex reads store's index.json: its images by their
// org.opencontainers.image.ref.name annotation → manifest digest.
func StoreIndex(store string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(store, "index.json"))
	if err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w\n%s", err, b)
	}
	out := map[string]string{}
	for _, m := range idx.Manifests {
		out[m.Annotations["org.opencontainers.image.ref.name"]] = m.Digest.String()
	}
	return out, nil
}

// StoreManifest reads the manifest of digest d from store (digest checked).
func StoreManifest(store, d string) (*v1.Manifest, error) {
	b, err := ReadBlob(store, d)
	if err != nil {
		return nil, err
	}
	return v1.ParseManifest(bytes.NewReader(b))
}

// StoreConfig reads the config of manifest m from store (digest checked).
func StoreConfig(store string, m *v1.Manifest) (*v1.ConfigFile, error) {
	b, err := ReadBlob(store, m.Config.Digest.String())
	if err != nil {
		return nil, err
	}
	return v1.ParseConfigFile(bytes.NewReader(b))
}

// StoreImage reads the image named ref (its ref.name annotation) in store
// with go-containerregistry's OCI layout reader.
func StoreImage(store, ref string) (v1.Image, error) {
	p, err := layout.FromPath(store)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == ref {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no image %s in the store %s", ref, store)
}
