package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/strata-build/strata/internal/build"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// TestLoadIntoDocker checks what --load sends: a POST of a docker-archive
// that go-containerregistry's reader accepts, tagged with the names, to a
// fake daemon on a unix socket.
func TestLoadIntoDocker(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	// a one-file image
	root := filepath.Join(dir, "rootfs")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "hello"), []byte("hi\n"), 0o644)
	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := layer.Commit(context.Background(), root, w, layer.Gzip, layer.DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Commit(blob.Digest); err != nil {
		t.Fatal(err)
	}
	cfg := v1.ConfigFile{OS: "linux", Architecture: "amd64"}
	cfg.History = []v1.History{{CreatedBy: "test"}}
	img, err := image.Write(s, cfg, []image.Layer{{Digest: blob.Digest, DiffID: blob.DiffID, Size: blob.Size, MediaType: blob.MediaType}})
	if err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	var path string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.Method + " " + r.URL.Path
		io.Copy(&got, r.Body)
		w.Write([]byte(`{"stream":"Loaded image: app:1\n"}`))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	t.Setenv("DOCKER_HOST", "unix://"+sock)

	b := &build.Builder{Store: s}
	if err := loadIntoDocker(context.Background(), b, img, []string{"app:1"}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, "/images/load") || !strings.HasPrefix(path, "POST") {
		t.Errorf("request %q, want POST .../images/load", path)
	}
	data := got.Bytes()
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		t.Fatalf("the daemon got no docker archive: %v", err)
	}
	if len(m) != 1 || len(m[0].RepoTags) != 1 || !strings.Contains(m[0].RepoTags[0], "app:1") {
		t.Fatalf("archive manifest %+v, want one image tagged app:1", m)
	}
	vimg, err := tarball.Image(opener, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := vimg.ConfigName()
	if d.String() != img.Manifest.Config.Digest.String() {
		t.Errorf("loaded image id %s, want %s", d, img.Manifest.Config.Digest)
	}

	// no daemon: a clear error
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(dir, "none.sock"))
	if err := loadIntoDocker(context.Background(), b, img, nil); err == nil || !strings.Contains(err.Error(), "no Docker daemon socket") {
		t.Errorf("without a daemon: err = %v", err)
	}
}
