package httpx

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A redirect loop stops after MaxRedirects even when the client's policy
// (go-containerregistry's) sets no limit.
func TestTransportRedirectLimit(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		http.Redirect(w, r, fmt.Sprintf("/?n=%d", n+1), http.StatusFound)
	}))
	defer srv.Close()
	c := &http.Client{Transport: NewTransport(time.Second, func(*http.Request) error { return errors.New("silent") }), CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	_, err := c.Get(srv.URL)
	if err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Fatalf("error %v, want the redirect limit", err)
	}
	if hits != MaxRedirects+1 {
		t.Errorf("the server saw %d requests, want %d", hits, MaxRedirects+1)
	}
}
