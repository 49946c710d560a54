package source

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/dfgitutil"

	"github.com/strata-build/strata/internal/layer"
)

// An ADD URL download fails within its timeout when the server sends
// nothing, and within the byte bound when it sends too much, leaving
// nothing in its directory beyond the bound.
func TestFetchHTTPBounds(t *testing.T) {
	const timeout = 500 * time.Millisecond
	const bound = 1 << 20
	chunk := make([]byte, 64<<10)
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	done := make(chan struct{})
	defer close(done)
	mux := http.NewServeMux()
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		w.Write(chunk)
		w.(http.Flusher).Flush()
		select {
		case <-done:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/announced", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10000000000")
		w.Write(chunk)
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write(chunk) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	o := HTTPOptions{Timeout: timeout, TimeoutEnv: "STRATA_HTTP_TIMEOUT", Bound: layer.ApplyOptions{MaxBytes: bound, BoundHint: "hint"}}
	for _, tc := range []struct{ url, want string }{
		{"http://" + silent.Addr().String() + "/x", "no data from the server for 500ms"},
		{srv.URL + "/stall", "no data from the server for 500ms"},
		{srv.URL + "/endless", "the download is more than 1048576 bytes (hint)"},
		{srv.URL + "/announced", "the server announces 10000000000 bytes, more than 1048576 bytes (hint)"},
	} {
		dir := t.TempDir()
		start := time.Now()
		_, err := FetchHTTP(context.Background(), tc.url, dir, "", o)
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.url, err, tc.want)
		}
		if took > 5*time.Second {
			t.Errorf("%s: failed after %s", tc.url, took)
		}
		var size int64
		filepath.Walk(dir, func(_ string, fi os.FileInfo, _ error) error {
			if fi != nil && fi.Mode().IsRegular() {
				size += fi.Size()
			}
			return nil
		})
		if size > bound {
			t.Errorf("%s: %d bytes written, over the bound", tc.url, size)
		}
	}
	it, err := FetchHTTP(context.Background(), srv.URL+"/ok", t.TempDir(), "", o)
	if err != nil || it.Info.Size() != int64(len(chunk)) {
		t.Fatalf("a download under the bound: %v", err)
	}
}

// An ADD git ref that starts with "-" must never reach git as an option
// (--upload-pack runs a command on the building host): it is refused, and
// a remote that looks like an option is passed after "--".
func TestFetchGitRefusesOptionRefs(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	for _, args := range [][]string{{"init", "-q", repo}, {"-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"}} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	canary := filepath.Join(dir, "canary")
	for _, ref := range []string{"--upload-pack=touch " + canary + ";git-upload-pack", "-q"} {
		_, err := FetchGit(context.Background(), &dfgitutil.GitRef{Remote: "file://" + repo, Ref: ref}, t.TempDir(), false)
		if err == nil || !strings.Contains(err.Error(), "invalid git ref") {
			t.Errorf("ref %q: err = %v, want invalid git ref", ref, err)
		}
	}
	_, err := FetchGit(context.Background(), &dfgitutil.GitRef{Remote: "--upload-pack=touch " + canary + ";git-upload-pack", Ref: "main"}, t.TempDir(), false)
	if err == nil {
		t.Error("remote that looks like an option: want an error")
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("git ran a command named in the ref")
	}
	if _, err := FetchGit(context.Background(), &dfgitutil.GitRef{Remote: "file://" + repo}, t.TempDir(), false); err != nil {
		t.Errorf("plain fetch: %v", err)
	}
}
