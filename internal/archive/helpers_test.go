package archive

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/store"
)

// testArchive writes a tar archive member by member.
type testArchive struct {
	t    *testing.T
	path string
	f    *os.File
	tw   *tar.Writer
}

func newTestArchive(t *testing.T) *testArchive {
	t.Helper()
	path := filepath.Join(t.TempDir(), "archive.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &testArchive{t: t, path: path, f: f, tw: tar.NewWriter(f)}
}

// add writes the regular file name with content b.
func (a *testArchive) add(name string, b []byte) {
	a.t.Helper()
	if err := a.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: int64(len(b)), Mode: 0o644}); err != nil {
		a.t.Fatal(err)
	}
	if _, err := a.tw.Write(b); err != nil {
		a.t.Fatal(err)
	}
}

// addJSON writes v, marshalled, as the file name.
func (a *testArchive) addJSON(name string, v any) []byte {
	a.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		a.t.Fatal(err)
	}
	a.add(name, b)
	return b
}

// blob writes v (marshalled unless it is []byte) as an OCI layout blob and
// returns its descriptor with mediaType.
func (a *testArchive) blob(mediaType string, v any) ocispec.Descriptor {
	a.t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			a.t.Fatal(err)
		}
	}
	d := digest.FromBytes(b)
	a.add(blobName(d), b)
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// ociLayout writes oci-layout and an index.json of manifests.
func (a *testArchive) ociLayout(manifests ...ocispec.Descriptor) {
	a.t.Helper()
	a.add(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`))
	idx := ocispec.Index{Manifests: manifests}
	idx.SchemaVersion = 2
	a.addJSON(ocispec.ImageIndexFile, idx)
}

// close finishes the archive and returns its path.
func (a *testArchive) close() string {
	a.t.Helper()
	if err := a.tw.Close(); err != nil {
		a.t.Fatal(err)
	}
	if err := a.f.Close(); err != nil {
		a.t.Fatal(err)
	}
	return a.path
}

func openTestStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var linuxAmd64 = v1.Platform{OS: "linux", Architecture: "amd64"}

// tinyImage returns a one-file layer tar and the config of an image of it.
func tinyImage(t *testing.T, content string) (layerTar, config []byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "file", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{{Algorithm: "sha256", Hex: digest.FromBytes(buf.Bytes()).Encoded()}}}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), b
}

// ociImage writes the blobs of an image of tinyImage(content) and returns
// its manifest's descriptor.
func (a *testArchive) ociImage(content string) ocispec.Descriptor {
	a.t.Helper()
	lt, cfg := tinyImage(a.t, content)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: a.blob(ocispec.MediaTypeImageConfig, cfg),
		Layers: []ocispec.Descriptor{a.blob(ocispec.MediaTypeImageLayer, lt)}}
	m.SchemaVersion = 2
	return a.blob(ocispec.MediaTypeImageManifest, m)
}

// index returns an image index of manifests.
func index(manifests ...ocispec.Descriptor) ocispec.Index {
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
	idx.SchemaVersion = 2
	return idx
}

// endHuge writes the header of a last member of size bytes, ends the
// archive and returns its path. The member's body is a hole in the file
// (zeros, which take no disk), so that a test can make an archive that
// declares gigabytes.
func (a *testArchive) endHuge(name string, size int64) string {
	a.t.Helper()
	if err := a.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Mode: 0o644}); err != nil {
		a.t.Fatal(err)
	}
	// The tar writer has written the header block; the body, its padding
	// and the end-of-archive blocks are zeros.
	end, err := a.f.Seek(0, io.SeekCurrent)
	if err != nil {
		a.t.Fatal(err)
	}
	if err := a.f.Truncate(end + (size+511)/512*512 + 1024); err != nil {
		a.t.Fatal(err)
	}
	if err := a.f.Close(); err != nil {
		a.t.Fatal(err)
	}
	return a.path
}
