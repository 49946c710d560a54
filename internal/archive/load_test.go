package archive

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
