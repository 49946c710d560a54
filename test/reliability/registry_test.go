package reliability

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// startDockerRegistry starts Debian's docker-registry on a loopback port
// (stopped by PID at the end of the test), or returns "" when it is not
// installed.
func startDockerRegistry(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return ""
	}
	return testenv.StartDockerRegistry(t, bin, suite.TempDir(t), false).Addr
}

// fault is what the proxy does to one request.
type fault int

const (
	passThrough fault = iota
	fail500           // answer 500 without asking the registry
	reset             // close the connection with a TCP reset before answering
	slow              // wait, then pass through
	truncate          // pass through, but cut the body in half and drop the connection
	cutBody           // forward half of the request body, then drop both connections
)

func (f fault) String() string {
	return [...]string{"none", "500", "reset", "slow", "truncate", "cut-body"}[f]
}

// proxy is a loopback HTTP proxy in front of a registry that injects faults:
// plan decides, for each request, from its method, path and how often the
// same method and path were seen before (attempt, from 0).
type proxy struct {
	addr     string
	upstream string
	rp       *httputil.ReverseProxy

	mu   sync.Mutex
	seen map[string]int
	plan func(r *http.Request, attempt int) fault
	// bytesPerSec throttles request and response bodies (0: no limit).
	bytesPerSec atomic.Int64
	slowDelay   time.Duration

	faults   atomic.Int64
	requests atomic.Int64
	// patchBytes counts the PATCH body bytes forwarded to the registry.
	patchBytes atomic.Int64
	logMu      sync.Mutex
	log        []string
}

func startProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	u, _ := url.Parse("http://" + upstream)
	p := &proxy{upstream: upstream, seen: map[string]int{}, slowDelay: 400 * time.Millisecond}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.ErrorLog = log.New(io.Discard, "", 0)
	p.rp.FlushInterval = -1
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// setPlan sets the fault plan and forgets the attempts seen so far.
func (p *proxy) setPlan(plan func(r *http.Request, attempt int) fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan = plan
	p.seen = map[string]int{}
}

func (p *proxy) logf(format string, a ...any) {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	p.log = append(p.log, fmt.Sprintf(format, a...))
}

func (p *proxy) Log() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return strings.Join(p.log, "\n")
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	key := r.Method + " " + r.URL.Path
	p.mu.Lock()
	attempt := p.seen[key]
	p.seen[key]++
	plan := p.plan
	p.mu.Unlock()
	f := passThrough
	if plan != nil {
		f = plan(r, attempt)
	}
	if f != passThrough {
		p.faults.Add(1)
		faultsInjected.Add(1)
	}
	p.logf("%s %s attempt %d: %s", r.Method, r.URL.Path, attempt, f)
	switch f {
	case fail500:
		io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}`))
		return
	case reset:
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic(http.ErrAbortHandler)
		}
		conn, _, err := hj.Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST instead of FIN
		}
		conn.Close()
		return
	case slow:
		time.Sleep(p.slowDelay)
	}
	if bps := p.bytesPerSec.Load(); bps > 0 && r.Body != nil {
		r.Body = &throttleReader{ReadCloser: r.Body, bps: bps} // uploads too
	}
	if f == cutBody {
		r.Body = &cutReader{ReadCloser: r.Body, left: r.ContentLength / 2}
	}
	if r.Method == http.MethodPatch && r.Body != nil {
		r.Body = &countReader{ReadCloser: r.Body, n: &p.patchBytes}
	}
	var out http.ResponseWriter = w
	if f == truncate {
		out = &truncWriter{ResponseWriter: w}
	}
	if bps := p.bytesPerSec.Load(); bps > 0 {
		out = &throttleWriter{ResponseWriter: out, bps: bps}
	}
	p.rp.ServeHTTP(out, r)
}

// cutReader ends a request body with an error after left bytes: the proxy
// then aborts its request to the registry (which has received those bytes)
// and answers the client 502, as a connection lost mid-upload looks.
type cutReader struct {
	io.ReadCloser
	left int64
}

func (c *cutReader) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("injected: connection cut mid-body")
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.ReadCloser.Read(b)
	c.left -= int64(n)
	return n, err
}

type countReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// truncWriter passes half of the body (by Content-Length) and then aborts
// the connection.
type truncWriter struct {
	http.ResponseWriter
	limit, written int64
}

func (t *truncWriter) WriteHeader(code int) {
	if n, err := fmt.Sscan(t.Header().Get("Content-Length"), &t.limit); n == 1 && err == nil {
		t.limit /= 2
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *truncWriter) Write(b []byte) (int, error) {
	if t.limit > 0 && t.written+int64(len(b)) > t.limit {
		n, _ := t.ResponseWriter.Write(b[:t.limit-t.written])
		t.written += int64(n)
		if f, ok := t.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	n, err := t.ResponseWriter.Write(b)
	t.written += int64(n)
	return n, err
}

func (t *truncWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// throttleWriter writes at about bps bytes a second.
type throttleWriter struct {
	http.ResponseWriter
	bps int64
}

func (t *throttleWriter) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		chunk := min(len(b), int(t.bps/20)+1)
		n, err := t.ResponseWriter.Write(b[:chunk])
		total += n
		if err != nil {
			return total, err
		}
		if f, ok := t.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		b = b[chunk:]
		time.Sleep(time.Duration(int64(chunk) * int64(time.Second) / t.bps))
	}
	return total, nil
}

// throttleReader reads at about bps bytes a second.
type throttleReader struct {
	io.ReadCloser
	bps int64
}

func (t *throttleReader) Read(b []byte) (int, error) {
	if max := int(t.bps/20) + 1; len(b) > max {
		b = b[:max]
	}
	n, err := t.ReadCloser.Read(b)
	time.Sleep(time.Duration(int64(n) * int64(time.Second) / t.bps))
	return n, err
}

func (t *throttleWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ---- raw registry client: push hand-made (hostile) images ----

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// pushBlob uploads b (monolithic upload) to repo at the registry addr.
func pushBlob(t *testing.T, addr, repo string, b []byte) string {
	t.Helper()
	d := sha(b)
	resp, err := http.Post("http://"+addr+"/v2/"+repo+"/blobs/uploads/", "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %s", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse("http://" + addr + "/")
	loc = base.ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", d)
	loc.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload blob %s: %s %s", d, resp.Status, body)
	}
	return d
}

// rawImage is an image made byte by byte.
type rawImage struct {
	config []byte
	layers [][]byte // compressed (or not) layer blobs as they are uploaded
	// diffIDs for the config; nil: computed from the layers (gunzipped)
	diffIDs []string
	// mediaTypes of the layers (default: OCI gzip layer)
	mediaTypes []string
}

// pushRaw uploads img to addr as repo:tag and returns the manifest digest.
func pushRaw(t *testing.T, addr, repo, tag string, img rawImage) string {
	t.Helper()
	var layers []map[string]any
	for i, l := range img.layers {
		mt := "application/vnd.oci.image.layer.v1.tar+gzip"
		if i < len(img.mediaTypes) && img.mediaTypes[i] != "" {
			mt = img.mediaTypes[i]
		}
		d := pushBlob(t, addr, repo, l)
		layers = append(layers, map[string]any{"mediaType": mt, "digest": d, "size": len(l)})
	}
	cd := pushBlob(t, addr, repo, img.config)
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(img.config)},
		"layers":        layers,
	})
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(m))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest: %s %s", resp.Status, body)
	}
	return sha(m)
}

// imageConfigJSON is a runnable config for a busybox-based image with the
// given diffIDs.
func imageConfigJSON(diffIDs []string) []byte {
	b, _ := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Env": []string{testenv.ImagePATH}, "Cmd": []string{"sh"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	return b
}

// manifestExists asks the registry (directly) whether repo:tag exists.
func manifestExists(t *testing.T, addr, repo, tag string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, "http://"+addr+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
