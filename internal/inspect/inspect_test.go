package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// putLayer stores raw (a tar, maybe compressed) as a gzip layer blob.
func putLayer(t *testing.T, s *store.Store, raw []byte) image.Layer {
	t.Helper()
	dr, err := layer.Decompress(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b, err := layer.Compress(context.Background(), dr, w, layer.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Commit(b.Digest); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewInfo(t *testing.T) {
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := putLayer(t, s, tarOf(t, false, tentry{name: "a", typ: '0', size: 5}))
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	cfg := v1.ConfigFile{OS: "linux", Architecture: "amd64", Created: v1.Time{Time: created}, Author: "me",
		Config:  v1.Config{Env: []string{"PATH=/bin"}, Entrypoint: []string{"/server"}},
		History: []v1.History{{CreatedBy: "COPY a /", Comment: "buildkit.dockerfile.v0"}}}
	img, err := image.Write(s, cfg, []image.Layer{l})
	if err != nil {
		t.Fatal(err)
	}
	info := NewInfo(img, []string{"docker.io/library/app:1", "registry.example.com:5000/team/app:2"}, 5)
	if info.Id != img.Manifest.Config.Digest.String() {
		t.Errorf("Id %s, want the config digest %s", info.Id, img.Manifest.Config.Digest)
	}
	if want := []string{"app:1", "registry.example.com:5000/team/app:2"}; !reflect.DeepEqual(info.RepoTags, want) {
		t.Errorf("RepoTags %q, want %q", info.RepoTags, want)
	}
	md := img.Descriptor.Digest.String()
	if want := []string{"app@" + md, "registry.example.com:5000/team/app@" + md}; !reflect.DeepEqual(info.RepoDigests, want) {
		t.Errorf("RepoDigests %q, want %q", info.RepoDigests, want)
	}
	if info.Created != "2024-05-06T07:08:09Z" || info.Os != "linux" || info.Architecture != "amd64" || info.Author != "me" || info.Size != 5 {
		t.Errorf("info: %+v", info)
	}
	if info.Comment != "buildkit.dockerfile.v0" {
		t.Errorf("Comment %q", info.Comment)
	}
	if info.RootFS.Type != "layers" || !reflect.DeepEqual(info.RootFS.Layers, []string{l.DiffID.String()}) {
		t.Errorf("RootFS %+v", info.RootFS)
	}
	raw, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Id", "RepoTags", "RepoDigests", "Created", "Architecture", "Os", "Config", "RootFS", "Size", "Manifest"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON has no %s: %s", k, raw)
		}
	}
	if ep := back["Config"].(map[string]any)["Entrypoint"]; !reflect.DeepEqual(ep, []any{"/server"}) {
		t.Errorf("Config.Entrypoint = %v", ep)
	}
	if ls := back["Manifest"].(map[string]any)["layers"].([]any); len(ls) != 1 {
		t.Errorf("Manifest.layers: %v", ls)
	}
	// no names: empty lists, not null
	if raw, _ := json.Marshal(NewInfo(img, nil, 0)); !strings.Contains(string(raw), `"RepoTags":[]`) {
		t.Errorf("RepoTags should be [] without names: %s", raw)
	}
}

// Layers reads the blobs of a stored image; the changes of each layer are
// worked out against the layers below it.
func TestLayers(t *testing.T) {
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l1 := putLayer(t, s, tarOf(t, false,
		tentry{name: "etc/", typ: '5'}, tentry{name: "etc/group", typ: '0', size: 20}, tentry{name: "etc/passwd", typ: '0', size: 50},
		tentry{name: "bin/", typ: '5'}, tentry{name: "bin/busybox", typ: '0', size: 900}, tentry{name: "bin/sh", typ: '2', link: "busybox"}))
	l2 := putLayer(t, s, tarOf(t, true, tentry{name: "etc/", typ: '5'}, tentry{name: "etc/.wh.group", typ: '0'}, tentry{name: "etc/passwd", typ: '0', size: 60}))
	cfg := v1.ConfigFile{OS: "linux", Architecture: "amd64", History: []v1.History{
		{CreatedBy: "import"}, {CreatedBy: "ENV A=1", EmptyLayer: true}, {CreatedBy: "RUN rm /etc/group && edit passwd"}}}
	img, err := image.Write(s, cfg, []image.Layer{l1, l2})
	if err != nil {
		t.Fatal(err)
	}
	layers, err := Layers(context.Background(), s, img)
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers", len(layers))
	}
	top := layers[1]
	if top.Index != 1 || top.CreatedBy != "RUN rm /etc/group && edit passwd" || top.Digest != l2.Digest.String() || top.Size != l2.Size {
		t.Errorf("top layer: %+v", top)
	}
	if top.Added != 0 || top.Modified != 1 || top.Deleted != 1 || top.Content != 60 || top.HiddenBytes != 70 {
		t.Errorf("top layer counts: %+v", top)
	}
	if got := briefs(top.Changes); !reflect.DeepEqual(got, []brief{{Kind: Modified, Path: "/etc/passwd", Size: 60, LowerSize: 50}, {Kind: Deleted, Path: "/etc/group", Size: 20}}) {
		t.Errorf("top changes: %+v", got)
	}
	if layers[0].Added != 6 || layers[0].Content != 977 || layers[0].CreatedBy != "import" {
		t.Errorf("bottom layer: %+v", layers[0])
	}
	sizes, err := LayerSizes(context.Background(), s, img)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sizes, []int64{977, 60}) {
		t.Errorf("LayerSizes = %v, want [977 60]", sizes)
	}

	// a missing blob is an error naming the layer
	if err := os.Remove(s.BlobPath(l2.Digest)); err != nil {
		t.Fatal(err)
	}
	if _, err := Layers(context.Background(), s, img); err == nil || !strings.Contains(err.Error(), "layer 2") {
		t.Errorf("missing blob: %v", err)
	}
}

// The content size of a layer is the same whether it is read from the blob
// or from the unpacked directory.
func TestLayerSizesBlobAndDir(t *testing.T) {
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(p string, n int) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), bytes.Repeat([]byte{'z'}, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("usr/bin/tool", 12345)
	write("usr/lib/lib.so", 999)
	write("empty", 0)
	if err := os.Link(filepath.Join(dir, "usr/bin/tool"), filepath.Join(dir, "usr/bin/tool2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../lib/lib.so", filepath.Join(dir, "usr/bin/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := layer.Commit(context.Background(), dir, w, layer.Gzip, layer.DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Commit(b.Digest); err != nil {
		t.Fatal(err)
	}
	l := b
	img, err := image.Write(s, v1.ConfigFile{OS: "linux", Architecture: "amd64"}, []image.Layer{l})
	if err != nil {
		t.Fatal(err)
	}
	want := int64(12345 + 999 + len("../lib/lib.so"))
	fromBlob, err := LayerSizes(context.Background(), s, img)
	if err != nil || fromBlob[0] != want {
		t.Fatalf("from the blob: %v, %v; want %d", fromBlob, err, want)
	}
	if err := os.Rename(dir, s.LayerDir(l.DiffID)); err != nil {
		t.Fatal(err)
	}
	if !s.HasLayer(l.DiffID) {
		t.Fatal("the layer is not unpacked")
	}
	fromDir, err := LayerSizes(context.Background(), s, img)
	if err != nil || fromDir[0] != want {
		t.Fatalf("from the unpacked layer: %v, %v; want %d", fromDir, err, want)
	}
}
