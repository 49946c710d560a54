package image

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestForPlatform: an image manifest is itself for any platform; an index
// gives its image for the platform asked (arm64/v8 is arm64), and
// otherwise an error that lists what it has and what the store lacks.
func TestForPlatform(t *testing.T) {
	s := openStore(t)
	var descs []v1.Descriptor
	for _, arch := range []string{"amd64", "arm64", "s390x"} {
		cfg := testConfig()
		cfg.Architecture = arch
		img, err := Write(s, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := v1.NewHash(img.Descriptor.Digest.String())
		descs = append(descs, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: d, Size: img.Descriptor.Size,
			Platform: &v1.Platform{OS: "linux", Architecture: arch}})
	}
	// The s390x image is named by the index but not held.
	descs[2].Digest = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("5", 64)}
	b, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: descs})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := s.PutBlob(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		plat v1.Platform
		want int // index into descs; -1: error
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, 0},
		{v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, 1},
		{v1.Platform{OS: "linux", Architecture: "s390x"}, -1},
		{v1.Platform{OS: "linux", Architecture: "riscv64"}, -1},
	} {
		got, err := ForPlatform(s, idx, tc.plat)
		if tc.want < 0 {
			if err == nil || !strings.Contains(err.Error(), "it has linux/amd64, linux/arm64, linux/s390x (not in the store)") {
				t.Errorf("ForPlatform(%v) = %s, %v; want the error listing the platforms", tc.plat, got, err)
			}
			continue
		}
		if err != nil || got.String() != descs[tc.want].Digest.String() {
			t.Errorf("ForPlatform(%v) = %s, %v; want %s", tc.plat, got, err, descs[tc.want].Digest)
		}
		img, err := LoadFor(s, ocispec.Descriptor{Digest: idx}, tc.plat)
		if err != nil || img.Config.Architecture != tc.plat.Architecture {
			t.Errorf("LoadFor(%v): %+v, %v", tc.plat, img, err)
		}
	}
	// An image manifest is itself, whatever the platform.
	m := digest.Digest(descs[0].Digest.String())
	if got, err := ForPlatform(s, m, v1.Platform{OS: "linux", Architecture: "arm64"}); err != nil || got != m {
		t.Errorf("ForPlatform(manifest) = %s, %v", got, err)
	}
}

// TestWriteIndex: an index of images lists them in order with their
// configs' platforms, as BuildKit writes one, and ForPlatform finds each.
func TestWriteIndex(t *testing.T) {
	s := openStore(t)
	var imgs []*Image
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "arm", Variant: "v7"}} {
		cfg := testConfig()
		cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
		img, err := Write(s, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	idx, err := WriteIndex(s, imgs)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.ReadBlob(idx.Descriptor.Digest)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + imgs[0].Descriptor.Digest.String() + `","size":` + strconv.FormatInt(imgs[0].Descriptor.Size, 10) + `,"platform":{"architecture":"arm64","os":"linux"}},` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + imgs[1].Descriptor.Digest.String() + `","size":` + strconv.FormatInt(imgs[1].Descriptor.Size, 10) + `,"platform":{"architecture":"arm","os":"linux","variant":"v7"}}]}`
	if string(raw) != want {
		t.Errorf("index:\n%s\nwant\n%s", raw, want)
	}
	if again, err := WriteIndex(s, imgs); err != nil || again.Descriptor.Digest != idx.Descriptor.Digest {
		t.Errorf("the same images gave another index: %v %v", again, err)
	}
	for i, p := range []v1.Platform{{OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "arm"}} {
		if got, err := ForPlatform(s, idx.Descriptor.Digest, p); err != nil || got != imgs[i].Descriptor.Digest {
			t.Errorf("ForPlatform(%v) = %s, %v", p, got, err)
		}
	}
}
