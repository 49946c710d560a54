// Package testenv holds what the black-box test suites (test/e2e,
// test/reliability) share to set up and inspect the machine: a busybox root
// like scripts/make-bases.sh makes, and the runc containers and processes a
// strata run may leave behind.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BusyboxRoot makes, at root, the busybox tree scripts/make-bases.sh makes
// (busybox-static and its applets, passwd and group with root and nobody)
// and returns root.
func BusyboxRoot(root string) (string, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return "", errors.New("busybox (busybox-static) is not installed")
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "root", "home", "usr/local", "var"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		return "", err
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(list)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil && !os.IsExist(err) {
			return "", err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return "", err
	}
	return root, os.Chmod(filepath.Join(root, "root"), 0o700)
}

// RuncContainers lists the runc containers in store's runc state dir.
func RuncContainers(store string) []string {
	state := filepath.Join(store, "runc")
	if _, err := os.Stat(state); err != nil {
		return nil
	}
	out, err := exec.Command("runc", "--root", state, "list", "-q").Output()
	if err != nil {
		return []string{"(runc list failed: " + err.Error() + ")"}
	}
	return strings.Fields(string(out))
}

// ProcessesWithEnv lists the processes whose environment holds entry
// (KEY=VALUE): a marker set with ENV finds a RUN's processes.
func ProcessesWithEnv(entry string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append(append([]byte{0}, env...), 0), []byte("\x00"+entry+"\x00")) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, fmt.Sprintf("pid %s (%s)", e.Name(), strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
	}
	return out
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

// SyncBuffer is a bytes.Buffer safe for a writer (a process's output) and a
// concurrent reader.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WriteFiles writes files (path → content, parents made as needed) into
// the existing directory dir and returns dir.
func WriteFiles(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
