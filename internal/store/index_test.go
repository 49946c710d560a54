package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// putImage stores a config blob cfg and a manifest for it; it returns the
// manifest's descriptor and the image ID (the config digest).
func putImage(t *testing.T, s *Store, cfg string) (ocispec.Descriptor, digest.Digest) {
	t.Helper()
	id, err := s.PutBlob([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	b := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[]}`,
		ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, id, len(cfg)))
	d, err := s.PutBlob(b)
	if err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(b))}, id
}

// entries lists index.json as "name=digest-prefix" ("-" for untagged).
func entries(t *testing.T, s *Store) string {
	t.Helper()
	var out []string
	for _, m := range readIndexFile(t, s).Manifests {
		n := m.Annotations[ocispec.AnnotationRefName]
		if n == "" {
			n = "-"
			if len(m.Annotations) != 0 {
				t.Errorf("untagged entry with annotations %v", m.Annotations)
			}
		}
		out = append(out, n+"="+m.Digest.Encoded()[:6])
	}
	return strings.Join(out, " ")
}

func short(d ocispec.Descriptor) string { return d.Digest.Encoded()[:6] }

func TestUntaggedImages(t *testing.T) {
	s := openStore(t)
	a, _ := putImage(t, s, `{"a":1}`)
	b, _ := putImage(t, s, `{"b":1}`)
	c, _ := putImage(t, s, `{"c":1}`)

	// A build without -t records its image untagged, once.
	for range 2 {
		if err := s.AddImage(a); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := entries(t, s), "-="+short(a); got != want {
		t.Errorf("after AddImage: %s, want %s", got, want)
	}
	if imgs, _ := s.Images(); len(imgs) != 0 {
		t.Errorf("Images lists an untagged image: %v", imgs)
	}
	all, _ := s.AllImages()
	if len(all) != 1 || all[0].Name != "" || all[0].Descriptor.Digest != a.Digest {
		t.Errorf("AllImages = %+v", all)
	}

	// Naming it drops the untagged entry; AddImage of a named image adds nothing.
	if err := s.Tag("app:1", a); err != nil {
		t.Fatal(err)
	}
	if err := s.AddImage(a); err != nil {
		t.Fatal(err)
	}
	if got, want := entries(t, s), "docker.io/library/app:1="+short(a); got != want {
		t.Errorf("after Tag: %s, want %s", got, want)
	}

	// Moving the name leaves the old image dangling; a second name keeps it named.
	if err := s.Tag("app:2", a); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("app:1", b); err != nil {
		t.Fatal(err)
	}
	if got, want := entries(t, s), "docker.io/library/app:1="+short(b)+" docker.io/library/app:2="+short(a); got != want {
		t.Errorf("after moving app:1 (a keeps app:2): %s, want %s", got, want)
	}
	if err := s.Tag("app:1", c); err != nil {
		t.Fatal(err)
	}
	if got, want := entries(t, s), "docker.io/library/app:1="+short(c)+" docker.io/library/app:2="+short(a)+" -="+short(b); got != want {
		t.Errorf("after moving app:1 again: %s, want %s", got, want)
	}
	// Re-tagging the same image changes nothing.
	if err := s.Tag("app:1", c); err != nil {
		t.Fatal(err)
	}
	if got, want := entries(t, s), "docker.io/library/app:1="+short(c)+" docker.io/library/app:2="+short(a)+" -="+short(b); got != want {
		t.Errorf("after tagging app:1 again: %s, want %s", got, want)
	}
	all, _ = s.AllImages()
	if len(all) != 3 || all[2].Name != "" || all[2].Descriptor.Digest != b.Digest {
		t.Errorf("AllImages (named first) = %+v", all)
	}

	// The dangling image's blobs are kept from garbage collection.
	blobs, _, err := s.ImageRefs()
	if err != nil {
		t.Fatal(err)
	}
	if !blobs[b.Digest] {
		t.Error("ImageRefs leaves out the dangling image")
	}

	// name@digest finds the dangling image.
	if im, ok, err := s.Lookup("app@" + b.Digest.String()); err != nil || !ok || im.Descriptor.Digest != b.Digest {
		t.Errorf("Lookup(app@digest of dangling) = %+v %v %v", im, ok, err)
	}

	// Untag of the last name removes the image (docker rmi), leaving no record.
	if found, err := s.Untag("app:2"); err != nil || !found {
		t.Fatal(found, err)
	}
	if got, want := entries(t, s), "docker.io/library/app:1="+short(c)+" -="+short(b); got != want {
		t.Errorf("after Untag app:2: %s, want %s", got, want)
	}

	// RemoveImage drops every entry of a manifest.
	if err := s.Tag("app:3", c); err != nil {
		t.Fatal(err)
	}
	names, found, err := s.RemoveImage(c.Digest)
	if err != nil || !found || strings.Join(names, " ") != "docker.io/library/app:1 docker.io/library/app:3" {
		t.Errorf("RemoveImage = %v %v %v", names, found, err)
	}
	names, found, err = s.RemoveImage(b.Digest)
	if err != nil || !found || len(names) != 0 {
		t.Errorf("RemoveImage(dangling) = %v %v %v", names, found, err)
	}
	if _, found, err := s.RemoveImage(b.Digest); err != nil || found {
		t.Errorf("second RemoveImage = %v %v", found, err)
	}
	if got := entries(t, s); got != "" {
		t.Errorf("after removing all: %q", got)
	}
	if err := s.AddImage(ocispec.Descriptor{Digest: digest.FromString("absent")}); err == nil {
		t.Error("AddImage of a manifest not in the store succeeded")
	}
}

func TestResolve(t *testing.T) {
	s := openStore(t)
	tagged, taggedID := putImage(t, s, `{"tagged":1}`)
	dangling, danglingID := putImage(t, s, `{"dangling":1}`)
	if err := s.Tag("app:1", tagged); err != nil {
		t.Fatal(err)
	}
	if err := s.AddImage(dangling); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]digest.Digest{
		taggedID.String():                       tagged.Digest,
		taggedID.Encoded():                      tagged.Digest,
		strings.ToUpper(taggedID.Encoded()[:8]): tagged.Digest,
		taggedID.Encoded()[:MinShortID]:         tagged.Digest,
		"sha256:" + taggedID.Encoded()[:12]:     tagged.Digest,
		"app:1":                                 tagged.Digest,
		danglingID.String():                     dangling.Digest,
		danglingID.Encoded()[:12]:               dangling.Digest,
		dangling.Digest.String():                dangling.Digest, // the manifest digest
		"app@" + dangling.Digest.String():       dangling.Digest,
	} {
		im, err := s.Resolve(ref)
		if err != nil || im.Descriptor.Digest != want {
			t.Errorf("Resolve(%q) = %+v, %v; want manifest %s", ref, im, err, want)
		}
	}
	for _, ref := range []string{"app:2", taggedID.Encoded()[:MinShortID-1], "sha256:" + strings.Repeat("0", 64), "nothere", "ffffffffffff"} {
		if _, err := s.Resolve(ref); !errors.Is(err, ErrNoSuchImage) {
			t.Errorf("Resolve(%q) = %v, want ErrNoSuchImage", ref, err)
		}
	}
	if _, err := s.Resolve("Bad Name"); err == nil || errors.Is(err, ErrNoSuchImage) {
		t.Errorf("Resolve(invalid) = %v, want an invalid-name error", err)
	}

	// Lookup (FROM, COPY --from) takes full IDs, not short ones.
	if im, ok, err := s.Lookup(danglingID.String()); err != nil || !ok || im.Descriptor.Digest != dangling.Digest {
		t.Errorf("Lookup(full ID) = %+v %v %v", im, ok, err)
	}
	if _, ok, _ := s.Lookup(danglingID.Encoded()[:12]); ok {
		t.Error("Lookup(short ID) found an image")
	}
	for ref, want := range map[string]bool{
		danglingID.String(): true, danglingID.Encoded(): true, strings.ToUpper(danglingID.Encoded()): true,
		danglingID.Encoded()[:12]: false, "sha256:" + danglingID.Encoded()[:12]: false, "busybox": false, "x" + danglingID.Encoded()[1:]: false,
	} {
		if IsID(ref) != want {
			t.Errorf("IsID(%q) = %v", ref, !want)
		}
	}

	// A name comes before a short ID that reads the same.
	prefix := danglingID.Encoded()[:6]
	if err := s.Tag(prefix, tagged); err != nil {
		t.Fatal(err)
	}
	if im, err := s.Resolve(prefix); err != nil || im.Descriptor.Digest != tagged.Digest {
		t.Errorf("Resolve(%s) (a name and a short ID) = %+v %v, want the named image", prefix, im, err)
	}

	// Two IDs with a common prefix: the prefix is ambiguous, more digits are not.
	seen := map[string]string{}
	var one, two string
	for i := 0; one == ""; i++ {
		cfg := fmt.Sprintf(`{"n":%d}`, i)
		p := digest.FromString(cfg).Encoded()[:MinShortID]
		if other, ok := seen[p]; ok {
			one, two = other, cfg
		}
		seen[p] = cfg
	}
	d1, id1 := putImage(t, s, one)
	d2, id2 := putImage(t, s, two)
	s.AddImage(d1)
	s.AddImage(d2)
	if _, err := s.Resolve(id1.Encoded()[:MinShortID]); !errors.Is(err, ErrAmbiguousID) {
		t.Errorf("Resolve(common prefix of %s and %s) = %v, want ErrAmbiguousID", id1, id2, err)
	}
	if im, err := s.Resolve(id2.String()); err != nil || im.Descriptor.Digest != d2.Digest {
		t.Errorf("Resolve(full ID) = %+v %v", im, err)
	}

	// One config under two manifests (two names) is one image.
	other := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":1},"layers":[],"annotations":{"x":"y"}}`,
		ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, taggedID))
	od, err := s.PutBlob(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("app:other", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: od, Size: int64(len(other))}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(taggedID.Encoded()[:12]); err != nil {
		t.Errorf("Resolve(short ID of an image under two manifests) = %v", err)
	}
}

// TestRecord: Record applies the names and untagged entries of several
// images (a load's) in one edit of index.json, each as Tag or AddImage
// would, or none of them when one cannot be applied.
func TestRecord(t *testing.T) {
	s := openStore(t)
	a, _ := putImage(t, s, `{"a":1}`)
	b, _ := putImage(t, s, `{"b":1}`)
	c, _ := putImage(t, s, `{"c":1}`)
	d, _ := putImage(t, s, `{"d":1}`)
	if err := s.Tag("app:1", a); err != nil {
		t.Fatal(err)
	}
	if err := s.AddImage(b); err != nil {
		t.Fatal(err)
	}
	before := entries(t, s)

	// Nothing is applied when one of them cannot be: a name that is
	// none, a manifest not in the store.
	absent := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("absent"), Size: 7}
	for _, bad := range []Image{{Name: "Not A Name", Descriptor: c}, {Name: "app:9", Descriptor: absent}, {Descriptor: absent}} {
		err := s.Record([]Image{{Name: "app:1", Descriptor: c}, {Name: "app:2", Descriptor: c}, {Descriptor: d}, bad})
		if err == nil {
			t.Errorf("Record with %+v succeeded", bad)
		}
		if got := entries(t, s); got != before {
			t.Errorf("after a failed Record with %+v: %s, want it as it was: %s", bad, got, before)
		}
	}

	// As Tag: app:1 moves from a, which is left untagged; b, named, loses
	// its untagged entry (also when it comes first). As AddImage: d gets an
	// untagged entry; a name given in the same Record wins over it (c).
	err := s.Record([]Image{
		{Descriptor: b},
		{Name: "app:1", Descriptor: b},
		{Name: "example.com/app:2", Descriptor: b},
		{Descriptor: c},
		{Name: "app:3", Descriptor: c},
		{Descriptor: d},
		{Descriptor: d},
	})
	if err != nil {
		t.Fatal(err)
	}
	untagged := []string{short(a), short(d)}
	slices.SortFunc(untagged, func(x, y string) int { return strings.Compare(x, y) })
	want := "docker.io/library/app:1=" + short(b) + " docker.io/library/app:3=" + short(c) + " example.com/app:2=" + short(b) + " -=" + untagged[0] + " -=" + untagged[1]
	if got := entries(t, s); got != want {
		t.Errorf("after Record:\n%s\nwant\n%s", got, want)
	}
}
