package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// putIndex writes an image index of the manifests ms (with their
// platforms, "os/arch") and returns its descriptor.
func putIndex(t *testing.T, s *Store, ms []ocispec.Descriptor, plats []string) ocispec.Descriptor {
	t.Helper()
	body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[`, ocispec.MediaTypeImageIndex)
	for i, m := range ms {
		if i > 0 {
			body += ","
		}
		body += fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":%q}}`, m.MediaType, m.Digest, m.Size, plats[i])
	}
	b := []byte(body + "]}")
	d, err := s.PutBlob(b)
	if err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: int64(len(b))}
}

// TestImageIndex: a name may point at an image index (a multi-platform
// image). Its ID is its own digest; what the store keeps for it is the
// index and every image of it the store holds, and a collection keeps
// them; fsck finds it sound.
func TestImageIndex(t *testing.T) {
	s := openStore(t)
	amd, amdCfg := putImage(t, s, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	arm, armCfg := putImage(t, s, `{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	idx := putIndex(t, s, []ocispec.Descriptor{amd, arm}, []string{"amd64", "arm64"})
	if err := s.Tag("multi:1", idx); err != nil {
		t.Fatal(err)
	}
	stray, strayCfg := putImage(t, s, `{"architecture":"s390x","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)

	id, err := s.ImageID(idx.Digest)
	if err != nil || id != idx.Digest {
		t.Errorf("ImageID(index) = %s, %v; want the index's digest %s", id, err, idx.Digest)
	}
	im, err := s.Resolve(idx.Digest.Encoded()[:12])
	if err != nil || im.Descriptor.Digest != idx.Digest {
		t.Errorf("Resolve(short ID of the index) = %+v, %v", im, err)
	}

	blobs, _, err := s.ImageRefs()
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]digest.Digest{"index": idx.Digest, "amd64 manifest": amd.Digest, "amd64 config": amdCfg,
		"arm64 manifest": arm.Digest, "arm64 config": armCfg} {
		if !blobs[d] {
			t.Errorf("ImageRefs misses the %s %s", name, d)
		}
	}
	for _, d := range []digest.Digest{stray.Digest, strayCfg} {
		if blobs[d] {
			t.Errorf("ImageRefs keeps %s, which no image uses", d)
		}
	}
	if _, err := s.Collect(blobs, nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{idx.Digest, amd.Digest, armCfg} {
		if !s.HasBlob(d) {
			t.Errorf("Collect removed %s, used by the index", d)
		}
	}
	if s.HasBlob(stray.Digest) {
		t.Errorf("Collect kept the unused manifest %s", stray.Digest)
	}
	rep, err := s.Fsck(context.Background(), FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Errorf("fsck of a store with an index: %+v", rep.Problems)
	}
}
