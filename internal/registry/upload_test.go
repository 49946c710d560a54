package registry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// faultyFront is a handler in front of a registry that cuts chosen PATCH
// requests off half way through their body (the client sees the connection
// drop) and counts the PATCH bytes that reached the registry.
type faultyFront struct {
	next       http.Handler
	cut        func(n int) bool // cut the n-th PATCH (from 0)?
	patches    atomic.Int32
	patchBytes atomic.Int64
	mu         sync.Mutex
	methods    []string
}

func (f *faultyFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.methods = append(f.methods, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	if r.Method != http.MethodPatch {
		f.next.ServeHTTP(w, r)
		return
	}
	n := int(f.patches.Add(1)) - 1
	if f.cut != nil && f.cut(n) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, r.ContentLength/2))
		f.patchBytes.Add(int64(len(b)))
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	cr := &countingReader{r: r.Body}
	r.Body = io.NopCloser(cr)
	f.next.ServeHTTP(w, r)
	f.patchBytes.Add(cr.n)
}

// newFront starts a registry behind a faultyFront that cuts the PATCHes cut
// selects (nil: none), and returns the front and its host:port.
func newFront(t *testing.T, cut func(n int) bool) (*faultyFront, string) {
	t.Helper()
	reg := newRegistry(t)
	front := &faultyFront{next: reg.srv.Config.Handler, cut: cut}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	return front, strings.TrimPrefix(srv.URL, "http://")
}

func (f *faultyFront) saw(method string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.methods {
		if strings.HasPrefix(m, method+" ") && strings.Contains(m, "/blobs/uploads/") {
			return true
		}
	}
	return false
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func layerBytes(t *testing.T, img v1.Image) int64 {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, l := range ls {
		s, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		n += s
	}
	return n
}

// verifyPushed reads every blob of ref back (digests are checked at EOF).
func verifyPushed(t *testing.T, ref string, want v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r)
	if err != nil {
		t.Fatalf("read back %s: %v", ref, err)
	}
	gd, _ := got.Digest()
	wd, _ := want.Digest()
	if gd != wd {
		t.Fatalf("pushed %s, want %s", gd, wd)
	}
	ls, _ := got.Layers()
	for i, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
}

// Blobs go up in chunks (Content-Range PATCHes), progress counts to the
// total, and a repeated push sends no blob bytes at all.
func TestChunkedUpload(t *testing.T) {
	front, host := newFront(t, nil)

	img, err := random.Image(20000, 2)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{})
	c.chunkSize = 4096
	var last, total int64
	if err := c.PushProgress(context.Background(), host+"/chunked/img:1", img, func(d, tot int64) { last, total = d, tot }); err != nil {
		t.Fatal(err)
	}
	verifyPushed(t, host+"/chunked/img:1", img)
	size := layerBytes(t, img)
	if n := front.patches.Load(); int64(n) < size/4096 {
		t.Errorf("%d PATCH requests for %d bytes in 4 KiB chunks", n, size)
	}
	if last != total || total < size {
		t.Errorf("progress ended at %d of %d (layers %d bytes)", last, total, size)
	}
	before := front.patchBytes.Load()
	if err := c.Push(context.Background(), host+"/chunked/img:2", img); err != nil {
		t.Fatal(err)
	}
	if d := front.patchBytes.Load() - before; d != 0 {
		t.Errorf("second push of the same blobs sent %d bytes", d)
	}
}

// A connection lost in the middle of a chunk: a registry that cannot say
// how much it kept (go-containerregistry's has no upload status) gets the
// blob again from the start, in a new upload, and the push succeeds.
func TestUploadRestartsWithoutStatus(t *testing.T) {
	front, host := newFront(t, func(n int) bool { return n == 2 || n == 5 })

	img, err := random.Image(30000, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{})
	c.chunkSize = 8192
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Push(ctx, host+"/cut/img:1", img); err != nil {
		t.Fatalf("push through two cut connections: %v", err)
	}
	verifyPushed(t, host+"/cut/img:1", img)
	if !front.saw(http.MethodGet) {
		t.Error("the uploader never asked for the upload's status")
	}
}

// A registry that keeps failing: the push gives up with the cause, after a
// bounded number of tries.
func TestUploadGivesUp(t *testing.T) {
	front, host := newFront(t, func(int) bool { return true })
	img, err := random.Image(3000, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{})
	c.retryDelay = time.Millisecond
	err = c.Push(context.Background(), host+"/dead/img:1", img)
	if err == nil || !strings.Contains(err.Error(), "giving up after") {
		t.Fatalf("push to a registry that drops every upload: %v", err)
	}
	if n := front.patches.Load(); n > 2*(uploadRetries+1) {
		t.Errorf("%d PATCH attempts for one blob", n)
	}
}

// A registry that takes every chunk but rejects the final PUT (a blob that
// does not match its digest): the push gives up after a bounded number of
// tries, though each try makes progress chunk by chunk.
func TestUploadGivesUpOnRejectedCommit(t *testing.T) {
	reg := newRegistry(t)
	var puts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			puts.Add(1)
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"errors":[{"code":"DIGEST_INVALID","message":"digest did not match content"}]}`)
			return
		}
		reg.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	img, err := random.Image(20000, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{})
	c.chunkSize = 4096
	c.retryDelay = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Push(ctx, strings.TrimPrefix(srv.URL, "http://")+"/rejected/img:1", img)
	if err == nil || !strings.Contains(err.Error(), "giving up after") || !strings.Contains(err.Error(), "DIGEST_INVALID") {
		t.Fatalf("push whose commits are all rejected: %v (%d PUTs)", err, puts.Load())
	}
	if n := puts.Load(); n > uploadRetries+1 {
		t.Errorf("%d PUTs of one blob", n)
	}
}

// manifestRefuser is a registry front that answers the first refuse
// manifest PUTs as Docker's distribution registry answers one naming a
// blob whose link file another upload is rewriting: 400 with
// DIGEST_INVALID and MANIFEST_BLOB_UNKNOWN.
func manifestRefuser(t *testing.T, refuse int32) (host string, puts *atomic.Int32) {
	t.Helper()
	reg := newRegistry(t)
	puts = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			if puts.Add(1) <= refuse {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"},`+
					`{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:00"}]}`)
				return
			}
		}
		reg.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), puts
}

// Builders pushing the same blobs to one repository at once: the registry
// refuses a manifest for a blob it holds, twice; the push puts it again
// and succeeds.
func TestPushRetriesManifestBlobUnknown(t *testing.T) {
	host, puts := manifestRefuser(t, 2)
	img := randomImage(t)
	c := New(Config{})
	c.retryDelay = time.Millisecond
	if err := c.Push(context.Background(), host+"/race/img:1", img); err != nil {
		t.Fatalf("push refused twice for an unknown blob: %v", err)
	}
	verifyPushed(t, host+"/race/img:1", img)
	if n := puts.Load(); n != 3 {
		t.Errorf("%d manifest PUTs, want 3", n)
	}
}

// A registry that keeps refusing: the push fails with the registry's
// answer after a bounded number of puts.
func TestPushGivesUpOnManifestBlobUnknown(t *testing.T) {
	host, puts := manifestRefuser(t, 1000)
	c := New(Config{})
	c.retryDelay = time.Millisecond
	err := c.Push(context.Background(), host+"/race/img:1", randomImage(t))
	if err == nil || !strings.Contains(err.Error(), "blob unknown to registry") {
		t.Fatalf("push always refused: %v", err)
	}
	if n := puts.Load(); n != blobUnknownRetries+1 {
		t.Errorf("%d manifest PUTs, want %d", n, blobUnknownRetries+1)
	}
}
