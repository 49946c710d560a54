package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeLayer puts a random gzip layer into s.
func storeLayer(t *testing.T, s *store.Store) Layer {
	t.Helper()
	l, err := random.Layer(700, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	d, size, err := s.WriteBlob(context.Background(), rc, "")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := l.Digest()
	if d.String() != wd.String() {
		t.Fatalf("stored layer digest %s, ggcr says %s", d, wd)
	}
	diff, _ := l.DiffID()
	return Layer{Digest: d, DiffID: digest.Digest(diff.String()), Size: size, MediaType: ocispec.MediaTypeImageLayerGzip}
}

// hashOf returns a function hashing what a Compressed/Uncompressed call returns.
func hashOf(t *testing.T) func(io.ReadCloser, error) string {
	return func(rc io.ReadCloser, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return digest.FromBytes(b).String()
	}
}

func testConfig() v1.ConfigFile {
	created := v1.Time{Time: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}
	return v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      created,
		Config: v1.Config{
			Env:          []string{"PATH=/usr/bin:/bin", "A=b c"},
			Cmd:          []string{"/bin/sh", "-c", "echo hi"},
			Entrypoint:   []string{"/init"},
			WorkingDir:   "/work",
			User:         "1000:1000",
			Labels:       map[string]string{"org.example": "yes"},
			ExposedPorts: map[string]struct{}{"80/tcp": {}},
			StopSignal:   "SIGTERM",
		},
		History: []v1.History{
			{Created: created, CreatedBy: "COPY a /a"},
			{Created: created, CreatedBy: "ENV A=b c", EmptyLayer: true},
			{Created: created, CreatedBy: "RUN x"},
		},
		// garbage that Write must replace
		RootFS: v1.RootFS{Type: "bogus", DiffIDs: []v1.Hash{{Algorithm: "sha256", Hex: strings.Repeat("f", 64)}}},
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	s := openStore(t)
	layers := []Layer{storeLayer(t, s), storeLayer(t, s)}
	cfg := testConfig()

	img, err := Write(s, cfg, layers)
	if err != nil {
		t.Fatal(err)
	}
	// manifest
	if img.Descriptor.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("Descriptor.MediaType = %q", img.Descriptor.MediaType)
	}
	raw, err := s.ReadBlob(img.Descriptor.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if img.Descriptor.Size != int64(len(raw)) {
		t.Errorf("Descriptor.Size = %d, blob has %d", img.Descriptor.Size, len(raw))
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest || m.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("manifest = %s", raw)
	}
	if m.Config.Digest != digest.FromBytes(img.ConfigRaw) || m.Config.Size != int64(len(img.ConfigRaw)) {
		t.Errorf("manifest config descriptor %+v does not match the config blob", m.Config)
	}
	if len(m.Layers) != 2 {
		t.Fatalf("manifest has %d layers", len(m.Layers))
	}
	for i, l := range layers {
		if m.Layers[i].Digest != l.Digest || m.Layers[i].Size != l.Size || m.Layers[i].MediaType != l.MediaType {
			t.Errorf("manifest layer %d = %+v, want %+v", i, m.Layers[i], l)
		}
	}
	// config
	if !reflect.DeepEqual(img.Layers, layers) {
		t.Errorf("Layers = %+v\nwant %+v", img.Layers, layers)
	}
	if img.Config.RootFS.Type != "layers" || len(img.Config.RootFS.DiffIDs) != 2 {
		t.Fatalf("RootFS = %+v", img.Config.RootFS)
	}
	for i, l := range layers {
		if img.Config.RootFS.DiffIDs[i].String() != l.DiffID.String() {
			t.Errorf("diffID %d = %s, want %s", i, img.Config.RootFS.DiffIDs[i], l.DiffID)
		}
	}
	want := testConfig()
	got := img.Config
	if !reflect.DeepEqual(got.Config, want.Config) || got.OS != "linux" || got.Architecture != "amd64" || !got.Created.Equal(want.Created.Time) || !reflect.DeepEqual(got.History, want.History) {
		t.Errorf("config changed in the round trip:\n got %+v\nwant %+v", got, want)
	}
	var onDisk map[string]any
	if err := json.Unmarshal(img.ConfigRaw, &onDisk); err != nil {
		t.Fatal(err)
	}
	if onDisk["rootfs"].(map[string]any)["type"] != "layers" {
		t.Errorf("config JSON rootfs = %v", onDisk["rootfs"])
	}

	// Load gives the same image.
	again, err := Load(s, img.Descriptor.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, img) {
		t.Errorf("Load differs from Write's result:\n%+v\n%+v", again, img)
	}

	// Writing the same thing again gives the same digest (deterministic).
	img2, err := Write(s, testConfig(), layers)
	if err != nil {
		t.Fatal(err)
	}
	if img2.Descriptor.Digest != img.Descriptor.Digest {
		t.Errorf("second Write gave %s, first %s", img2.Descriptor.Digest, img.Descriptor.Digest)
	}
}

func TestWriteNoLayers(t *testing.T) {
	s := openStore(t)
	img, err := Write(s, v1.ConfigFile{OS: "linux", Architecture: "arm64"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 0 || img.Config.RootFS.Type != "layers" {
		t.Errorf("%+v", img)
	}
	// an empty image still has "diff_ids": [] in its config, as the spec requires
	if !strings.Contains(string(img.ConfigRaw), `"diff_ids":[]`) {
		t.Errorf("config %s lacks \"diff_ids\":[]", img.ConfigRaw)
	}
	raw, _ := s.ReadBlob(img.Descriptor.Digest)
	if !strings.Contains(string(raw), `"layers":[]`) {
		t.Errorf("manifest %s lacks \"layers\":[]", raw)
	}
	v, err := img.V1(s)
	if err != nil {
		t.Fatal(err)
	}
	if ls, err := v.Layers(); err != nil || len(ls) != 0 {
		t.Errorf("V1 layers %d %v", len(ls), err)
	}
}

func TestWriteBadDiffID(t *testing.T) {
	s := openStore(t)
	if _, err := Write(s, v1.ConfigFile{}, []Layer{{Digest: digest.FromString("x"), DiffID: "nonsense", Size: 1, MediaType: ocispec.MediaTypeImageLayerGzip}}); err == nil {
		t.Error("Write accepted an invalid diffID")
	}
}

func TestV1View(t *testing.T) {
	s := openStore(t)
	layers := []Layer{storeLayer(t, s), storeLayer(t, s), storeLayer(t, s)}
	img, err := Write(s, testConfig(), layers)
	if err != nil {
		t.Fatal(err)
	}
	v, err := img.V1(s)
	if err != nil {
		t.Fatal(err)
	}
	d, err := v.Digest()
	if err != nil || d.String() != img.Descriptor.Digest.String() {
		t.Errorf("V1 Digest = %s %v, want the stored manifest digest %s", d, err, img.Descriptor.Digest)
	}
	if mt, _ := v.MediaType(); string(mt) != ocispec.MediaTypeImageManifest {
		t.Errorf("MediaType = %s", mt)
	}
	if size, _ := v.Size(); size != img.Descriptor.Size {
		t.Errorf("Size = %d, want %d", size, img.Descriptor.Size)
	}
	rawM, _ := v.RawManifest()
	if digest.FromBytes(rawM) != img.Descriptor.Digest {
		t.Error("RawManifest is not the stored manifest")
	}
	cn, err := v.ConfigName()
	if err != nil || cn.String() != img.Manifest.Config.Digest.String() {
		t.Errorf("ConfigName = %s %v", cn, err)
	}
	cf, err := v.ConfigFile()
	if err != nil || cf.Config.WorkingDir != "/work" || len(cf.RootFS.DiffIDs) != 3 {
		t.Errorf("ConfigFile = %+v %v", cf, err)
	}
	vl, err := v.Layers()
	if err != nil || len(vl) != 3 {
		t.Fatalf("Layers = %d %v", len(vl), err)
	}
	for i, l := range vl {
		ld, _ := l.Digest()
		ldiff, _ := l.DiffID()
		if ld.String() != layers[i].Digest.String() || ldiff.String() != layers[i].DiffID.String() {
			t.Errorf("layer %d: %s/%s, want %s/%s", i, ld, ldiff, layers[i].Digest, layers[i].DiffID)
		}
		if got := hashOf(t)(l.Compressed()); got != layers[i].Digest.String() {
			t.Errorf("layer %d compressed content hashes to %s", i, got)
		}
		if got := hashOf(t)(l.Uncompressed()); got != layers[i].DiffID.String() {
			t.Errorf("layer %d uncompressed content hashes to %s, want diffID %s", i, got, layers[i].DiffID)
		}
		if sz, _ := l.Size(); sz != layers[i].Size {
			t.Errorf("layer %d size %d", i, sz)
		}
		if mt, _ := l.MediaType(); string(mt) != layers[i].MediaType {
			t.Errorf("layer %d media type %s", i, mt)
		}
	}
	h, _ := v1.NewHash(layers[1].DiffID.String())
	if l, err := v.LayerByDiffID(h); err != nil {
		t.Errorf("LayerByDiffID: %v", err)
	} else if ld, _ := l.Digest(); ld.String() != layers[1].Digest.String() {
		t.Errorf("LayerByDiffID gave %s", ld)
	}
	missing, _ := v1.NewHash(digest.FromString("absent").String())
	if _, err := v.LayerByDigest(missing); err == nil {
		t.Error("LayerByDigest(absent) succeeded")
	}
	// The config is reachable as a "layer" by its digest (partial.ConfigLayer).
	if cl, err := v.LayerByDigest(cn); err != nil {
		t.Errorf("LayerByDigest(config): %v", err)
	} else if got := hashOf(t)(cl.Compressed()); got != cn.String() {
		t.Errorf("config layer hashes to %s", got)
	}
}

func TestImportPreservesDigest(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	src, err := random.Image(1024, 3)
	if err != nil {
		t.Fatal(err)
	}
	ociSrc := mutate.MediaType(mutate.ConfigMediaType(src, types.OCIConfigJSON), types.OCIManifestSchema1)
	for _, tt := range []struct {
		name string
		img  v1.Image
	}{
		{"docker media types", src},
		{"oci media types", ociSrc},
		{"no layers", empty.Image},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want, err := tt.img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			got, err := Import(ctx, s, tt.img)
			if err != nil {
				t.Fatal(err)
			}
			if got.Descriptor.Digest.String() != want.String() {
				t.Errorf("imported digest %s, source %s", got.Descriptor.Digest, want)
			}
			wantMT, _ := tt.img.MediaType()
			if got.Descriptor.MediaType != string(wantMT) {
				t.Errorf("Descriptor.MediaType = %s, want %s", got.Descriptor.MediaType, wantMT)
			}
			wantRaw, _ := tt.img.RawManifest()
			if got.Descriptor.Size != int64(len(wantRaw)) {
				t.Errorf("Descriptor.Size = %d, want %d", got.Descriptor.Size, len(wantRaw))
			}
			wantCfg, _ := tt.img.RawConfigFile()
			if string(got.ConfigRaw) != string(wantCfg) {
				t.Error("config bytes changed")
			}
			srcLayers, _ := tt.img.Layers()
			if len(got.Layers) != len(srcLayers) {
				t.Fatalf("%d layers, want %d", len(got.Layers), len(srcLayers))
			}
			for i, l := range srcLayers {
				d, _ := l.Digest()
				diff, _ := l.DiffID()
				if got.Layers[i].Digest.String() != d.String() || got.Layers[i].DiffID.String() != diff.String() {
					t.Errorf("layer %d = %+v, want %s/%s", i, got.Layers[i], d, diff)
				}
				if err := s.VerifyBlob(got.Layers[i].Digest); err != nil {
					t.Errorf("layer %d blob: %v", i, err)
				}
			}
			// the view of the imported image has the source digest too
			v, err := got.V1(s)
			if err != nil {
				t.Fatal(err)
			}
			if vd, _ := v.Digest(); vd != want {
				t.Errorf("V1 digest %s, want %s", vd, want)
			}
			// importing again is a no-op with the same result
			again, err := Import(ctx, s, tt.img)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("second Import = %+v %v", again, err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	s := openStore(t)
	put := func(v any) digest.Digest {
		var b []byte
		switch v := v.(type) {
		case string:
			b = []byte(v)
		default:
			b, _ = json.Marshal(v)
		}
		d, err := s.PutBlob(b)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfgOneDiff := put(fmt.Sprintf(`{"rootfs":{"type":"layers","diff_ids":["sha256:%064x"]}}`, 1))
	cases := map[string]struct {
		manifest digest.Digest
		want     string
	}{
		"missing manifest": {digest.FromString("nothing"), "load image"},
		"not json":         {put("not json"), "manifest"},
		"an index": {put(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[]}`, ocispec.MediaTypeImageIndex)),
			"is an index"},
		"missing config": {put(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":"sha256:%064x","size":2},"layers":[]}`,
			ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, 7)), "load image"},
		"layer count mismatch": {put(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":1},"layers":[]}`,
			ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, cfgOneDiff)), "0 layers but 1 diffIDs"},
	}
	for name, tc := range cases {
		_, err := Load(s, tc.manifest)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
