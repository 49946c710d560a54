package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// TimeoutEnv names the environment variable that sets how long a registry
// may stay silent (no connection, no answer, no body bytes) before the
// request fails: a Go duration (90s, 2m) or seconds.
const TimeoutEnv = "STRATA_REGISTRY_TIMEOUT"

// DefaultTimeout is the idle timeout of registry requests when none is set.
const DefaultTimeout = 60 * time.Second

// maxRedirects is how many redirects one request follows, as net/http's
// default policy (which go-containerregistry's own policy replaces).
const maxRedirects = 10

// ParseTimeout parses a STRATA_REGISTRY_TIMEOUT value ("" is DefaultTimeout).
func ParseTimeout(v string) (time.Duration, error) {
	if v == "" {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, fmt.Errorf("%s=%q: not a duration (90s, 2m) or a number of seconds", TimeoutEnv, v)
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s=%q: must be positive", TimeoutEnv, v)
	}
	return d, nil
}

// newTransport returns the HTTP transport of registry requests: net/http's
// default one, and a watchdog that fails a request when the registry is
// silent for idle (while connecting, sending, waiting for the answer or
// reading its body: it cancels the request's context, which stops each of
// them, so no transport timeout of the same length races it with other
// words), and a request that follows more than maxRedirects redirects.
func newTransport(idle time.Duration) http.RoundTripper {
	if idle <= 0 {
		idle = DefaultTimeout
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	return &idleTransport{base: base, idle: idle}
}

type idleTransport struct {
	base http.RoundTripper
	idle time.Duration
}

// errIdle is the cause of a request the watchdog stopped.
type idleError struct {
	method, url string
	idle        time.Duration
}

func (e *idleError) Error() string {
	return fmt.Sprintf("%s %s: the registry sent nothing for %s (set %s to wait longer)", e.method, e.url, e.idle, TimeoutEnv)
}

func (t *idleTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A redirected request carries the response that redirected it, which
	// carries the request before: the chain's length is the redirect count.
	hops := 0
	for r := req; r.Response != nil && r.Response.Request != nil; r = r.Response.Request {
		hops++
		if hops > maxRedirects {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, fmt.Errorf("%s %s: stopped after %d redirects", req.Method, req.URL.Redacted(), maxRedirects)
		}
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{cause: &idleError{method: req.Method, url: req.URL.Redacted(), idle: t.idle}, cancel: cancel, idle: t.idle}
	w.timer = time.AfterFunc(t.idle, w.fire)
	req = req.WithContext(ctx)
	if req.Body != nil {
		req.Body = &watchedBody{rc: req.Body, w: w}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		w.stop()
		if w.fired() {
			return nil, w.cause
		}
		return nil, err
	}
	w.kick()
	resp.Body = &watchedBody{rc: resp.Body, w: w, done: true}
	return resp, nil
}

// watchdog cancels a request when kick is not called for idle.
type watchdog struct {
	cause  error
	cancel context.CancelCauseFunc
	idle   time.Duration
	timer  *time.Timer

	mu       sync.Mutex
	hasFired bool
}

func (w *watchdog) fire() {
	w.mu.Lock()
	w.hasFired = true
	w.mu.Unlock()
	w.cancel(w.cause)
}

func (w *watchdog) fired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hasFired
}

func (w *watchdog) kick() { w.timer.Reset(w.idle) }

func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel(nil)
}

// watchedBody is a request or response body whose reads keep the request
// alive; done marks the response body, whose end (or Close) ends the request.
type watchedBody struct {
	rc   io.ReadCloser
	w    *watchdog
	done bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && b.w.fired() {
		return n, b.w.cause
	}
	if n > 0 {
		b.w.kick()
	}
	return n, err
}

func (b *watchedBody) Close() error {
	if b.done {
		b.w.stop()
	}
	return b.rc.Close()
}
