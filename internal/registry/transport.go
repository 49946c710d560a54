package registry

import (
	"fmt"
	"net/http"
	"time"

	"github.com/strata-build/strata/internal/httpx"
)

// TimeoutEnv names the environment variable that sets how long a registry
// may stay silent (no connection, no answer, no body bytes) before the
// request fails: a Go duration (90s, 2m) or seconds.
const TimeoutEnv = "STRATA_REGISTRY_TIMEOUT"

// DefaultTimeout is the idle timeout of registry requests when none is set.
const DefaultTimeout = 60 * time.Second

// ParseTimeout parses a STRATA_REGISTRY_TIMEOUT value ("" is DefaultTimeout).
func ParseTimeout(v string) (time.Duration, error) {
	return httpx.ParseTimeout(TimeoutEnv, v, DefaultTimeout)
}

// newTransport returns the HTTP transport of registry requests: httpx's,
// failing a request the registry is silent on for idle with an idleError.
func newTransport(idle time.Duration) http.RoundTripper {
	if idle <= 0 {
		idle = DefaultTimeout
	}
	return httpx.NewTransport(idle, func(req *http.Request) error {
		return &idleError{method: req.Method, url: req.URL.Redacted(), idle: idle}
	})
}

// idleError is the error of a request the registry was silent on.
type idleError struct {
	method, url string
	idle        time.Duration
}

func (e *idleError) Error() string {
	return fmt.Sprintf("%s %s: the registry sent nothing for %s (set %s to wait longer)", e.method, e.url, e.idle, TimeoutEnv)
}
