package export

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestLoadIntoDocker checks what --load sends: a POST of a docker-archive
// that go-containerregistry's reader accepts, tagged with the names, to a
// fake daemon on a unix socket.
func TestLoadIntoDocker(t *testing.T) {
	s, img := testImage(t)
	dir := t.TempDir()

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

	if err := LoadIntoDocker(context.Background(), s, img, []string{"app:1"}); err != nil {
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
	if err := LoadIntoDocker(context.Background(), s, img, nil); err == nil || !strings.Contains(err.Error(), "no Docker daemon socket") {
		t.Errorf("without a daemon: err = %v", err)
	}
}
