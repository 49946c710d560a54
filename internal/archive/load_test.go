package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestNamedDigest(t *testing.T) {
	const hex = "e4f4664d8e9446783f3a849399fd99289085f8ae7b807b57667234f254d998d0"
	for _, c := range []struct {
		member string
		named  bool
	}{
		{"blobs/sha256/" + hex, true}, // docker 25 and later
		{hex + ".json", true},         // older docker's config
		{"sha256:" + hex, true},       // go-containerregistry's config
		{hex + ".tar.gz", true},       // go-containerregistry's layer
		{hex + ".tar", true},          // skopeo's layer
		{hex + "/layer.tar", false},   // older docker's layer: an ID, not a digest
		{"manifest.json", false},
		{hex[:63] + ".json", false},
		{"blobs/sha512/" + hex + hex, false},
	} {
		d, ok := namedDigest(c.member)
		if ok != c.named || (ok && d.String() != "sha256:"+hex) {
			t.Errorf("namedDigest(%q) = %q, %v; want named %v", c.member, d, ok, c.named)
		}
	}
}

func TestIndexTar(t *testing.T) {
	long := strings.Repeat("d/", 80) + "long" // needs a PAX header
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	add(&tar.Header{Name: "./index.json"}, "index")
	add(&tar.Header{Name: "blobs/", Typeflag: tar.TypeDir}, "")
	add(&tar.Header{Name: long}, "long")
	add(&tar.Header{Name: "blobs/sha256/aa"}, "first")
	add(&tar.Header{Name: "blobs/sha256/aa"}, "second") // appended later: wins
	add(&tar.Header{Name: "blobs/sha256/sym", Typeflag: tar.TypeSymlink, Linkname: "aa"}, "")
	add(&tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "./index.json"}, "")
	add(&tar.Header{Name: "loop", Typeflag: tar.TypeSymlink, Linkname: "loop"}, "")
	add(&tar.Header{Name: "../escape"}, "up")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "a.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ti, err := indexTar(f)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"index.json":       "index",
		"./index.json":     "index",
		long:               "long",
		"blobs/sha256/aa":  "second",
		"blobs/sha256/sym": "second",
		"hard":             "index",
		"escape":           "up",
	} {
		s, ok := ti.lookup(name)
		if !ok {
			t.Errorf("%s not found", name)
			continue
		}
		b, err := io.ReadAll(ti.open(s))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	for _, name := range []string{"blobs", "loop", "missing"} {
		if ti.has(name) {
			t.Errorf("%s: found, want not", name)
		}
	}
}

func TestImageName(t *testing.T) {
	for _, c := range []struct {
		ann  map[string]string
		want string
		warn bool
	}{
		{map[string]string{containerdImageName: "docker.io/library/busybox:1", ocispec.AnnotationRefName: "1"}, "busybox:1", false},
		{map[string]string{ocispec.AnnotationRefName: "busybox:1"}, "busybox:1", false},
		{map[string]string{ocispec.AnnotationRefName: "registry.example.com:5000/team/app"}, "registry.example.com:5000/team/app:latest", false},
		// a bare tag alone is read as a name, as docker does
		{map[string]string{ocispec.AnnotationRefName: "1.0"}, "1.0:latest", false},
		{map[string]string{ocispec.AnnotationRefName: "V1"}, "", true},
		{map[string]string{containerdImageName: "app@sha256:" + strings.Repeat("a", 64)}, "", true},
		{nil, "", false},
	} {
		got, warning := imageName(c.ann)
		if got != c.want || (warning != "") != c.warn {
			t.Errorf("imageName(%v) = %q, %q; want %q, warning %v", c.ann, got, warning, c.want, c.warn)
		}
	}
}

// TestLoadBoundsJSON: manifest.json and the image configs of a docker
// archive are read into memory only up to maxJSON bytes, as the OCI
// layout's manifests, indexes and configs are: a member that declares more
// is refused before it is read.
func TestLoadBoundsJSON(t *testing.T) {
	for _, c := range []struct {
		name   string
		member string
		size   int64
		write  func(a *testArchive, size int64) (path string)
	}{
		{"manifest.json", "manifest.json", 4 << 30, func(a *testArchive, size int64) string {
			return a.endHuge("manifest.json", size)
		}},
		{"manifest.json-spaces", "manifest.json", maxJSON + 2, func(a *testArchive, size int64) string {
			// Valid JSON, all of which a JSON decoder would buffer.
			if err := a.tw.WriteHeader(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Size: size, Mode: 0o644}); err != nil {
				t.Fatal(err)
			}
			spaces := bytes.Repeat([]byte{' '}, 1<<20)
			a.tw.Write([]byte("["))
			for n := size - 2; n > 0; n -= int64(len(spaces)) {
				a.tw.Write(spaces[:min(n, int64(len(spaces)))])
			}
			a.tw.Write([]byte("]"))
			return a.close()
		}},
		{"config", "big.json", maxJSON + 1, func(a *testArchive, size int64) string {
			lt, _ := tinyImage(t, "x\n")
			a.add("layer.tar", lt)
			a.addJSON("manifest.json", tarball.Manifest{{Config: "big.json", RepoTags: []string{"big:1"}, Layers: []string{"layer.tar"}}})
			return a.endHuge("big.json", size)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := c.write(newTestArchive(t), c.size)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Load(context.Background(), openTestStore(t), path, linuxAmd64)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("loaded an archive with a huge member")
			}
			for _, w := range []string{path, c.member, fmt.Sprint(c.size), "too big"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
				t.Errorf("Load allocated %d MB", got>>20)
			}
		})
	}
}

// TestLoadDockerSharedLayer: images of a docker archive that share a layer
// member (uncompressed, as docker writes them) are each loaded with it,
// compressed and stored once; a config that gives the shared member
// another diffID is refused.
func TestLoadDockerSharedLayer(t *testing.T) {
	lt, cfg1 := tinyImage(t, "shared\n")
	cfg2 := bytes.Replace(cfg1, []byte(`"os":"linux"`), []byte(`"os":"linux","author":"b"`), 1)
	otherTar, _ := tinyImage(t, "other\n")
	cfgBad := bytes.Replace(cfg1, []byte(digest.FromBytes(lt).Encoded()), []byte(digest.FromBytes(otherTar).Encoded()), 1)
	member := blobName(digest.FromBytes(lt))
	write := func(t *testing.T, cfgs ...[]byte) string {
		a := newTestArchive(t)
		a.add(member, lt)
		var m tarball.Manifest
		for i, c := range cfgs {
			a.add(blobName(digest.FromBytes(c)), c)
			d := tarball.Descriptor{Config: blobName(digest.FromBytes(c)), Layers: []string{member}}
			if i == 0 {
				d.RepoTags = []string{"a:1"}
			}
			m = append(m, d)
		}
		a.addJSON("manifest.json", m)
		return a.close()
	}

	s := openTestStore(t)
	loaded, err := Load(context.Background(), s, write(t, cfg1, cfg2), linuxAmd64)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 2 || len(loaded[0].Tags) != 1 || len(loaded[1].Tags) != 0 {
		t.Fatalf("loaded %+v; want a:1 and an untagged image", loaded)
	}
	l0, l1 := loaded[0].Image.Manifest.Layers, loaded[1].Image.Manifest.Layers
	if len(l0) != 1 || len(l1) != 1 || l0[0].Digest != l1[0].Digest || l0[0].MediaType != "application/vnd.docker.image.rootfs.diff.tar.gzip" {
		t.Errorf("layers %+v and %+v; want one gzip layer, the same", l0, l1)
	}
	blobs, err := os.ReadDir(filepath.Join(s.Path("blobs"), "sha256"))
	if err != nil || len(blobs) != 5 {
		t.Errorf("%d blobs in the store (%v); want 5: 2 configs, 2 manifests, 1 layer", len(blobs), err)
	}

	_, err = Load(context.Background(), openTestStore(t), write(t, cfg1, cfgBad), linuxAmd64)
	if err == nil || !strings.Contains(err.Error(), "image 2 of manifest.json") || !strings.Contains(err.Error(), digest.FromBytes(otherTar).String()) {
		t.Errorf("error %v; want one naming image 2 and the diffID its config gives", err)
	}
}
