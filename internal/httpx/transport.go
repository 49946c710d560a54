// Package httpx is the HTTP transport strata's downloads share (registry
// requests and ADD URLs): a request fails when its peer stays silent too
// long — while connecting, sending, waiting for the answer or reading the
// body: a watchdog cancels the request's context, which stops each of them,
// so no transport timeout of the same length races it with other words —
// and a request follows at most MaxRedirects redirects, whatever the
// client's redirect policy (go-containerregistry's sets no limit).
package httpx

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

// MaxRedirects is how many redirects one request follows, as net/http's
// default policy.
const MaxRedirects = 10

// ParseTimeout parses the value v of the environment variable env, a
// timeout: a Go duration (90s, 2m) or a number of seconds; "" is def.
func ParseTimeout(env, v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, fmt.Errorf("%s=%q: not a duration (90s, 2m) or a number of seconds", env, v)
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s=%q: must be positive", env, v)
	}
	return d, nil
}

// NewTransport returns net/http's default transport with the watchdog: a
// request that receives nothing for idle fails with silent(req).
func NewTransport(idle time.Duration, silent func(req *http.Request) error) http.RoundTripper {
	return &idleTransport{base: http.DefaultTransport.(*http.Transport).Clone(), idle: idle, silent: silent}
}

type idleTransport struct {
	base   http.RoundTripper
	idle   time.Duration
	silent func(req *http.Request) error
}

func (t *idleTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A redirected request carries the response that redirected it, which
	// carries the request before: the chain's length is the redirect count.
	hops := 0
	for r := req; r.Response != nil && r.Response.Request != nil; r = r.Response.Request {
		hops++
		if hops > MaxRedirects {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, fmt.Errorf("%s %s: stopped after %d redirects", req.Method, req.URL.Redacted(), MaxRedirects)
		}
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{cause: t.silent(req), cancel: cancel, idle: t.idle}
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
