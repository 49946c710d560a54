package export

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/registry"
)

// tarMembers returns the names of the members of the tar file at path and
// the content of the one named want.
func tarMembers(t *testing.T, path, want string) ([]string, []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	var body []byte
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, body
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == want {
			body, _ = io.ReadAll(tr)
		}
	}
}

func TestArchiveExporters(t *testing.T) {
	s, img := testImage(t)
	ex := Exporters(Env{Store: s})
	dir := t.TempDir()
	ctx := context.Background()

	docker := filepath.Join(dir, "img.docker.tar")
	if err := ex["docker"].Export(ctx, img, Output{Type: "docker", Dest: docker}, []string{"app:1"}); err != nil {
		t.Fatal(err)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(docker) })
	if err != nil || len(m) != 1 || !slices.Contains(m[0].RepoTags, "app:1") {
		t.Errorf("docker archive manifest %+v, %v; want one image named app:1", m, err)
	}

	for _, typ := range []string{"oci", "tar"} {
		dest := filepath.Join(dir, "img."+typ)
		if err := ex[typ].Export(ctx, img, Output{Type: typ, Dest: dest}, []string{"app:1"}); err != nil {
			t.Fatal(err)
		}
		names, raw := tarMembers(t, dest, "index.json")
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			t.Fatalf("%s: index.json: %v (members %q)", typ, err, names)
		}
		if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != img.Descriptor.Digest || idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "1" {
			t.Errorf("%s: index %+v", typ, idx.Manifests)
		}
		if !slices.Contains(names, "oci-layout") {
			t.Errorf("%s: members %q, want an OCI layout", typ, names)
		}
	}

	// A failed export leaves neither the file nor its temp file.
	bad := filepath.Join(dir, "missing", "img.tar")
	if err := ex["docker"].Export(ctx, img, Output{Type: "docker", Dest: bad}, nil); err == nil || !strings.HasPrefix(err.Error(), "output "+bad+": ") {
		t.Errorf("export into a missing folder: err = %v", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temp file %s left", e.Name())
		}
	}
}

func TestLocalExporter(t *testing.T) {
	s, img := testImage(t)
	var got string
	ex := Exporters(Env{Store: s, Rootfs: func(_ context.Context, i *image.Image, dir string) error {
		if i != img {
			t.Error("rootfs of another image")
		}
		got = dir
		return nil
	}})
	if err := ex["local"].Export(context.Background(), img, Output{Type: "local", Dest: "/out"}, nil); err != nil || got != "/out" {
		t.Errorf("local export wrote %q, %v", got, err)
	}
}

func TestStoreAndRegistryExporters(t *testing.T) {
	s, img := testImage(t)
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	var logs []string
	env := Env{
		Store:    s,
		Registry: registry.New(registry.Config{Registries: map[string]registry.Host{host: {Insecure: true}}}),
		Logf:     func(format string, args ...any) { logs = append(logs, format) },
	}
	ex := Exporters(env)
	ctx := context.Background()

	if err := ex["image"].Export(ctx, img, Output{Type: "image"}, []string{"local/app:1", "local/app:2"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"local/app:1", "local/app:2"} {
		if im, ok, err := s.Lookup(n); err != nil || !ok || im.Descriptor.Digest != img.Descriptor.Digest {
			t.Errorf("%s: %v %v %v", n, im.Descriptor.Digest, ok, err)
		}
	}
	if len(logs) != 0 {
		t.Errorf("type=image pushed: %q", logs)
	}

	ref := host + "/app:pushed"
	if err := ex["registry"].Export(ctx, img, Output{Type: "registry", Push: true}, []string{ref}); err != nil {
		t.Fatal(err)
	}
	if len(logs) == 0 || logs[0] != "pushing %s" {
		t.Errorf("push progress %q", logs)
	}
	pulled, err := env.Registry.Image(ctx, ref, *img.Config.Platform())
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := pulled.Digest(); d.String() != img.Descriptor.Digest.String() {
		t.Errorf("registry holds %s, want %s", d, img.Descriptor.Digest)
	}
	if _, ok, _ := s.Lookup(ref); !ok {
		t.Errorf("pushed name %s not in the store", ref)
	}

	// push-by-digest: the manifest is in the repository, no tag is made
	// there or in the store
	shard := host + "/shards:ignored"
	if err := ex["registry"].Export(ctx, img, Output{Type: "registry", Push: true, ByDigest: true}, []string{shard}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Registry.Get(ctx, host+"/shards@"+img.Descriptor.Digest.String()); err != nil {
		t.Errorf("pushed by digest, but: %v", err)
	}
	if tags, err := env.Registry.Tags(ctx, shard); err != nil || len(tags) != 0 {
		t.Errorf("a push by digest made tags %v (%v)", tags, err)
	}
	if _, ok, _ := s.Lookup(shard); ok {
		t.Errorf("a push by digest named %s in the store", shard)
	}
}

func TestStoresImage(t *testing.T) {
	for _, tt := range []struct {
		outs []Output
		want bool
	}{
		{nil, true},
		{[]Output{{Type: "docker"}, {Type: "local"}}, false},
		{[]Output{{Type: "oci"}, {Type: "image"}}, true},
		{[]Output{{Type: "registry"}}, true},
	} {
		if got := StoresImage(tt.outs); got != tt.want {
			t.Errorf("StoresImage(%+v) = %v", tt.outs, got)
		}
	}
}

func TestMetadataAndIDFiles(t *testing.T) {
	_, img := testImage(t)
	dir := t.TempDir()
	md := filepath.Join(dir, "md.json")
	if err := WriteMetadataFile(md, img, []string{"a:1", "b:2"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(md)
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got["containerimage.digest"] != img.Descriptor.Digest.String() || got["containerimage.config.digest"] != img.Manifest.Config.Digest.String() || got["image.name"] != "a:1,b:2" {
		t.Errorf("metadata %s", raw)
	}
	if err := WriteMetadataFile(md, img, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(md)
	if strings.Contains(string(raw), "image.name") || !strings.HasSuffix(string(raw), "}\n") {
		t.Errorf("metadata without names %s", raw)
	}
	id := filepath.Join(dir, "iid")
	if err := WriteIDFile(id, digest.Digest(img.Manifest.Config.Digest.String())); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(id); string(b) != img.Manifest.Config.Digest.String() {
		t.Errorf("iidfile %q", b)
	}
}
