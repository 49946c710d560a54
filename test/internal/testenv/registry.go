package testenv

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// StartRegistry serves go-containerregistry's in-process registry on a
// loopback port until t ends and returns its host:port; handler, when set,
// may answer a request itself first (a registry that misbehaves).
func StartRegistry(t testing.TB, handler func(w http.ResponseWriter, r *http.Request) bool) string {
	t.Helper()
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if handler != nil && handler(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Registry is a running Debian docker-registry on a loopback port.
type Registry struct {
	Addr string // 127.0.0.1:PORT
	log  *SyncBuffer
}

// Log is what the registry printed so far (its access log, when asked for).
func (r *Registry) Log() string { return r.log.String() }

// StartDockerRegistry starts bin (Debian's docker-registry) serving from
// dir on a free 127.0.0.1 port, with its access log when accessLog is set,
// and waits until /v2/ answers. It is stopped by PID when the test ends.
func StartDockerRegistry(t testing.TB, bin, dir string, accessLog bool) *Registry {
	t.Helper()
	level := "error"
	if accessLog {
		level = "info"
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: %s\n  accesslog:\n    disabled: %t\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
			level, !accessLog, filepath.Join(dir, "data"), addr)
		cfgPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		log := &SyncBuffer{}
		cmd := exec.Command(bin, "serve", cfgPath)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start docker-registry: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		stop := func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		if err := waitHTTP("http://"+addr+"/v2/", done, 15*time.Second); err != nil {
			stop()
			lastErr = fmt.Errorf("%v\nregistry log:\n%s", err, log.String())
			continue
		}
		t.Cleanup(stop)
		return &Registry{Addr: addr, log: log}
	}
	t.Fatalf("docker-registry did not come up: %v", lastErr)
	return nil
}

// waitHTTP polls url until it answers 200, the process exits or timeout passes.
func waitHTTP(url string, exited <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("registry exited: %v", err)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within %s", url, timeout)
}
