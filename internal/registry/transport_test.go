package registry

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseTimeout(t *testing.T) {
	for v, want := range map[string]time.Duration{"": DefaultTimeout, "90s": 90 * time.Second, "2m": 2 * time.Minute, "5": 5 * time.Second} {
		got, err := ParseTimeout(v)
		if err != nil || got != want {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"soon", "-1s", "0"} {
		if _, err := ParseTimeout(v); err == nil {
			t.Errorf("ParseTimeout(%q) should fail", v)
		}
	}
}

// A body that stops arriving fails the read after the idle timeout, with
// an error that says so.
func TestTransportIdleBody(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("half"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer srv.Close()
	defer close(stop)
	c := &http.Client{Transport: newTransport(300 * time.Millisecond)}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	_, err = io.ReadAll(resp.Body)
	var ie *idleError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), TimeoutEnv) {
		t.Fatalf("read error %v, want the idle timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("read failed after %s", d)
	}
}
