package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestLoadIndexFanout: a hostile OCI archive can list one image index many
// times at each level of a nesting, which a plain walk visits (and reads)
// N^depth times; an index is walked once, and the walk is bounded. The
// platforms not chosen are named once each in the error.
func TestLoadIndexFanout(t *testing.T) {
	// leaf returns a manifest descriptor for os/amd64 (the manifest is
	// never read: it is for another platform).
	leaf := func(os string) ocispec.Descriptor {
		b := []byte(`{"schemaVersion":2}`)
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b)),
			Platform: &ocispec.Platform{OS: os, Architecture: "amd64"}}
	}
	t.Run("shared-child", func(t *testing.T) {
		// 7 levels, each index lists the next one 8 times: 8^7 (2 million)
		// paths to a leaf for another platform, in a 20 KB archive.
		a := newTestArchive(t)
		child := leaf("plan9")
		for range 7 {
			var kids []ocispec.Descriptor
			for range 8 {
				kids = append(kids, child)
			}
			child = a.blob(ocispec.MediaTypeImageIndex, index(kids...))
		}
		a.ociLayout(child)
		path := a.close()
		start := time.Now()
		_, err := Load(context.Background(), openTestStore(t), path, linuxAmd64)
		t.Logf("%v", time.Since(start))
		if err == nil {
			t.Fatal("loaded an archive without a linux/amd64 image")
		}
		msg := err.Error()
		if len(msg) > 1000 {
			msg = msg[:1000] + "..."
		}
		if !strings.Contains(msg, path) || !strings.Contains(msg, "no image for linux/amd64") || strings.Count(msg, "plan9/amd64") != 1 {
			t.Errorf("error %q; want one naming the archive, linux/amd64 and plan9/amd64 once", msg)
		}
	})
	t.Run("shared-index", func(t *testing.T) {
		// Two names for one multi-platform index: the image chosen from
		// it (once) gets both.
		a := newTestArchive(t)
		host := a.ociImage("host\n")
		host.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
		idx := a.blob(ocispec.MediaTypeImageIndex, index(leaf("plan9"), host))
		var entries []ocispec.Descriptor
		for _, n := range []string{"a:1", "b:1"} {
			e := idx
			e.Annotations = map[string]string{ocispec.AnnotationRefName: n}
			entries = append(entries, e)
		}
		a.ociLayout(entries...)
		loaded, err := Load(context.Background(), openTestStore(t), a.close(), linuxAmd64)
		if err != nil {
			t.Fatal(err)
		}
		if len(loaded) != 1 || !slices.Equal(loaded[0].Tags, []string{"a:1", "b:1"}) || loaded[0].Image.Descriptor.Digest != host.Digest {
			t.Errorf("loaded %+v; want the linux/amd64 image %s as a:1 and b:1", loaded, host.Digest)
		}
	})
	t.Run("too-many", func(t *testing.T) {
		// Beyond maxDescriptors manifests and indexes, the walk stops.
		a := newTestArchive(t)
		var kids []ocispec.Descriptor
		for range maxDescriptors {
			kids = append(kids, leaf("plan9"))
		}
		a.ociLayout(a.blob(ocispec.MediaTypeImageIndex, index(kids...)))
		path := a.close()
		_, err := Load(context.Background(), openTestStore(t), path, linuxAmd64)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("more than %d", maxDescriptors)) {
			t.Errorf("error %v; want one naming the archive and the limit", err)
		}
	})
	t.Run("many-platforms", func(t *testing.T) {
		// The error names the first platforms not chosen, each once.
		a := newTestArchive(t)
		var kids []ocispec.Descriptor
		for i := range 3 * maxOthers {
			kids = append(kids, leaf(fmt.Sprintf("os%d", i%(2*maxOthers))))
		}
		a.ociLayout(a.blob(ocispec.MediaTypeImageIndex, index(kids...)))
		path := a.close()
		_, err := Load(context.Background(), openTestStore(t), path, linuxAmd64)
		if err == nil {
			t.Fatal("loaded an archive without a linux/amd64 image")
		}
		msg := err.Error()
		if strings.Count(msg, "os0/amd64") != 1 || len(regexp.MustCompile(`os\d+/amd64`).FindAllString(msg, -1)) != maxOthers || !strings.Contains(msg, fmt.Sprintf("and %d more", maxOthers)) {
			t.Errorf("error %q; want %d platforms, each once, and %d more", msg, maxOthers, maxOthers)
		}
	})
}
