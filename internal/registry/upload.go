package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// DefaultChunkSize is the size of one PATCH of a blob upload. A connection
// lost mid-upload costs at most what the registry did not keep of one chunk.
const DefaultChunkSize = 32 << 20

// uploadRetries is how many failures one blob upload survives without
// getting further than it ever got before the push fails.
const uploadRetries = 5

// blob is one blob of an image to upload: its digest, size, and a way to
// read it from the start.
type blob struct {
	digest v1.Hash
	size   int64
	open   func() (io.ReadCloser, error)
}

// imageBlobs lists the distinct blobs of img to upload: its layers, then
// its config. Layers that live in a registry (not in the store) are left to
// go-containerregistry, which mounts them across repositories instead of
// moving their bytes.
func imageBlobs(img v1.Image) ([]blob, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	seen := map[v1.Hash]bool{}
	var out []blob
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		size, err := l.Size()
		if err != nil {
			return nil, err
		}
		if _, ok := l.(*remote.MountableLayer); ok || seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, blob{digest: d, size: size, open: l.Compressed})
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	cd, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	if !seen[cd] {
		out = append(out, blob{digest: cd, size: int64(len(cfg)), open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(cfg)), nil
		}})
	}
	return out, nil
}

// uploader uploads blobs to one repository with the registry API's chunked
// upload (POST, PATCH with Content-Range, PUT), resuming an interrupted
// upload where the registry says it stopped (GET on the upload URL, as
// Docker's distribution registry answers); a registry that cannot tell
// gets the blob again from its start. go-containerregistry's own writer
// streams each blob in one request and starts over on any failure.
type uploader struct {
	client    *http.Client
	base      *url.URL // https://host/v2/REPO/
	chunkSize int64
	progress  func(done, total int64)
	mu        sync.Mutex // guards done and progress calls
	done      int64
	total     int64
	backoff   time.Duration // first retry delay, doubled each time
}

func (c *Client) newUploader(ctx context.Context, repo name.Repository, progress func(done, total int64)) (*uploader, error) {
	auth, err := c.keychain.Resolve(repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, c.transport, []string{repo.Scope(transport.PushScope)})
	if err != nil {
		return nil, err
	}
	base, err := url.Parse(fmt.Sprintf("%s://%s/v2/%s/", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr()))
	if err != nil {
		return nil, err
	}
	chunk := c.chunkSize
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	return &uploader{client: &http.Client{Transport: rt}, base: base, chunkSize: chunk, progress: progress, backoff: c.firstRetryDelay()}, nil
}

// existsParallel is how many blobs an uploader asks the registry about at
// once: a cache export names many layers the registry holds already, and
// one round trip for each in turn adds up.
const existsParallel = 8

// uploadAll uploads every blob the repository lacks: it asks about all of
// them, a few at a time, then sends the missing ones one after another
// (each resumable on its own).
func (u *uploader) uploadAll(ctx context.Context, blobs []blob) error {
	for _, b := range blobs {
		u.total += b.size
	}
	have := make([]bool, len(blobs))
	sem := make(chan struct{}, existsParallel)
	var wg sync.WaitGroup
	for i, b := range blobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ok, err := u.exists(ctx, b.digest)
			have[i] = err == nil && ok
		}()
	}
	wg.Wait()
	for i, b := range blobs {
		if have[i] {
			u.report(b.size)
			continue
		}
		if err := u.upload(ctx, b); err != nil {
			return fmt.Errorf("upload blob %s: %w", b.digest, err)
		}
	}
	return nil
}

func (u *uploader) report(n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.done += n
	if u.progress != nil {
		u.progress(u.done, u.total)
	}
}

// upload sends one blob.
func (u *uploader) upload(ctx context.Context, b blob) error {
	st := &blobUpload{u: u, b: b}
	defer st.close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		done, err := st.step(ctx)
		if done || err != nil {
			return err
		}
	}
}

// blobUpload is the state of one blob's upload: chunks sent with PATCH,
// resumed where the registry says it got to, finished with PUT.
type blobUpload struct {
	u        *uploader
	b        blob
	loc      *url.URL // the upload's URL, as the registry last gave it
	off      int64    // bytes the registry has
	src      *sourceReader
	srcOff   int64
	failures int
	// most is the furthest the upload got: failures count from the last
	// time it went further, so an upload that fails at the same point again
	// and again (a final PUT the registry rejects) ends.
	most     int64
	reported int64
}

func (st *blobUpload) close() {
	if st.src != nil {
		st.src.Close()
	}
}

// step makes one request (start, one chunk, or the final PUT) and reports
// whether the blob is uploaded; an error ends the upload.
func (st *blobUpload) step(ctx context.Context) (done bool, err error) {
	u, b := st.u, st.b
	if st.loc == nil {
		l, err := u.start(ctx)
		if err != nil {
			return false, st.fail(ctx, err)
		}
		st.loc, st.off = l, 0
	}
	if st.off < b.size {
		return false, st.sendChunk(ctx)
	}
	err = u.finish(ctx, st.loc, b.digest)
	if err == nil {
		u.report(b.size - st.reported)
		return true, nil
	}
	if ok, herr := u.exists(ctx, b.digest); herr == nil && ok {
		u.report(b.size - st.reported)
		return true, nil // the PUT went through; its answer was lost
	}
	if ferr := st.fail(ctx, err); ferr != nil {
		return false, ferr
	}
	st.loc = nil // start over: the upload session may be gone
	return false, nil
}

// sendChunk PATCHes the next chunk; after a failure it asks the registry
// how much it kept (without an answer, the upload starts over).
func (st *blobUpload) sendChunk(ctx context.Context) error {
	u := st.u
	if err := st.seek(); err != nil {
		return err
	}
	n := min(u.chunkSize, st.b.size-st.off)
	next, err := u.patch(ctx, st.loc, st.src, st.off, n)
	st.srcOff = -1 // how much of the chunk was read is unknown
	if err == nil {
		st.loc, st.off = next, st.off+n
		st.srcOff = st.off
		if st.off > st.most {
			st.most, st.failures = st.off, 0
		}
		u.report(st.off - st.reported)
		st.reported = st.off
		return nil
	}
	if st.src.err != nil {
		// The blob could not be read here (damaged in the store): sending
		// it again cannot help.
		return st.src.err
	}
	if ferr := st.fail(ctx, err); ferr != nil {
		return ferr
	}
	l, have, serr := u.status(ctx, st.loc)
	if serr != nil {
		st.loc = nil
		return nil
	}
	st.loc, st.off = l, have
	return nil
}

// seek positions src at off, reopening the blob if it is past it.
func (st *blobUpload) seek() error {
	if st.src != nil && st.srcOff == st.off {
		return nil
	}
	if st.src != nil {
		st.src.Close()
		st.src = nil
	}
	rc, err := st.b.open()
	if err != nil {
		return err
	}
	if _, err := io.CopyN(io.Discard, rc, st.off); err != nil {
		rc.Close()
		return fmt.Errorf("read blob up to byte %d: %w", st.off, err)
	}
	st.src, st.srcOff = &sourceReader{rc: rc}, st.off
	return nil
}

// fail records a failed request and waits before the next; after too many
// in a row it gives up.
func (st *blobUpload) fail(ctx context.Context, err error) error {
	st.failures++
	if st.failures > uploadRetries {
		return fmt.Errorf("giving up after %d failures: %w", st.failures, err)
	}
	return backoff(ctx, st.u.backoff, st.failures-1)
}

// sourceReader keeps the first error of reading a blob to upload, which
// the HTTP client reports only as a failed request.
type sourceReader struct {
	rc  io.ReadCloser
	err error
}

func (r *sourceReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func (r *sourceReader) Close() error { return r.rc.Close() }

func (u *uploader) do(ctx context.Context, method string, target *url.URL, body io.Reader, size int64, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, target.String(), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return u.client.Do(req)
}

// exists reports whether the repository has the blob.
func (u *uploader) exists(ctx context.Context, d v1.Hash) (bool, error) {
	resp, err := u.do(ctx, http.MethodHead, u.base.JoinPath("blobs", d.String()), nil, 0, nil)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// start opens an upload session and returns its URL.
func (u *uploader) start(ctx context.Context) (*url.URL, error) {
	target := u.base.JoinPath("blobs", "uploads")
	target.Path += "/"
	resp, err := u.do(ctx, http.MethodPost, target, nil, 0, nil)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusAccepted {
		return nil, statusError("start upload", resp)
	}
	return u.location(resp)
}

// patch sends n bytes of r as the chunk at off and returns the upload's next URL.
func (u *uploader) patch(ctx context.Context, loc *url.URL, r io.Reader, off, n int64) (*url.URL, error) {
	resp, err := u.do(ctx, http.MethodPatch, loc, io.LimitReader(r, n), n, map[string]string{
		"Content-Type":  "application/octet-stream",
		"Content-Range": fmt.Sprintf("%d-%d", off, off+n-1),
	})
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusNoContent {
		return nil, statusError("upload chunk", resp)
	}
	return u.location(resp)
}

// status asks the registry how many bytes of the upload at loc it has
// (the Range header of a GET, "0-N"); an error means it cannot say.
func (u *uploader) status(ctx context.Context, loc *url.URL) (*url.URL, int64, error) {
	resp, err := u.do(ctx, http.MethodGet, loc, nil, 0, nil)
	if err != nil {
		return nil, 0, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusNoContent {
		return nil, 0, statusError("upload status", resp)
	}
	next, err := u.location(resp)
	if err != nil {
		next = loc
	}
	rng := resp.Header.Get("Range")
	if rng == "" {
		return next, 0, nil
	}
	_, end, ok := strings.Cut(rng, "-")
	last, perr := strconv.ParseInt(end, 10, 64)
	if !ok || perr != nil {
		return nil, 0, fmt.Errorf("upload status: bad Range %q", rng)
	}
	return next, last + 1, nil
}

// finish commits the upload as the blob d.
func (u *uploader) finish(ctx context.Context, loc *url.URL, d v1.Hash) error {
	target := *loc
	q := target.Query()
	q.Set("digest", d.String())
	target.RawQuery = q.Encode()
	resp, err := u.do(ctx, http.MethodPut, &target, nil, 0, nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusNoContent {
		return statusError("commit upload", resp)
	}
	return nil
}

// location resolves the Location header of resp against the registry.
func (u *uploader) location(resp *http.Response) (*url.URL, error) {
	l := resp.Header.Get("Location")
	if l == "" {
		return nil, errors.New("registry sent no upload location")
	}
	p, err := url.Parse(l)
	if err != nil {
		return nil, fmt.Errorf("upload location %q: %w", l, err)
	}
	return u.base.ResolveReference(p), nil
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func statusError(what string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	msg := strings.TrimSpace(string(b))
	if msg != "" {
		return fmt.Errorf("%s: %s: %s", what, resp.Status, msg)
	}
	return fmt.Errorf("%s: %s", what, resp.Status)
}
