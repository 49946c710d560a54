// Package cli tests strata's inspection and documentation commands through
// the binary: images built from real Dockerfiles (root, runc and overlayfs)
// are examined with strata inspect, history and layers and checked against
// what the store's blobs hold (read here independently) and what skopeo
// says; graph output is rendered with Graphviz, completion scripts run in
// bash, man pages go through groff.
package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	skipReason string // non-empty: tests that build skip with it
	repoRoot   string
	workDir    string
	strataBin  string
	baseRoot   string // a busybox rootfs to import
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if repoRoot, err = filepath.Abs("../.."); err != nil {
		fmt.Fprintln(os.Stderr, "cli:", err)
		return 1
	}
	if workDir, err = os.MkdirTemp("", "strata-cli-"); err != nil {
		fmt.Fprintln(os.Stderr, "cli:", err)
		return 1
	}
	defer os.RemoveAll(workDir)
	strataBin = filepath.Join(workDir, "strata")
	b := exec.Command("go", "build", "-o", strataBin, "./cmd/strata")
	b.Dir = repoRoot
	if out, err := b.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "cli: go build ./cmd/strata: %v\n%s", err, out)
		return 1
	}
	switch {
	case os.Geteuid() != 0:
		skipReason = "building images needs root (overlayfs mounts and runc); run as root"
	default:
		if _, err := exec.LookPath("runc"); err != nil {
			skipReason = "building images needs runc (apt-get install runc)"
		} else if baseRoot, err = makeBase(filepath.Join(workDir, "base")); err != nil {
			skipReason = "cannot make a busybox rootfs: " + err.Error()
		}
	}
	if skipReason != "" {
		fmt.Fprintln(os.Stderr, "cli: tests that build images skip:", skipReason)
	}
	return m.Run()
}

// makeBase makes a small busybox root filesystem.
func makeBase(root string) (string, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return "", errors.New("busybox (busybox-static) is not installed")
	}
	for _, d := range []string{"bin", "etc", "tmp", "root", "opt"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		return "", err
	}
	for _, a := range []string{"sh", "rm", "mkdir", "echo", "cat", "ls", "true", "dd", "head"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
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
	return root, os.Chmod(filepath.Join(root, "tmp"), 0o1777)
}

func requireBuild(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("strata %s: exit %d\n--- stdout\n%s\n--- stderr\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// strataRun runs the binary with --root store (store "" leaves it out).
func strataRun(t *testing.T, store string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	full := args
	if store != "" {
		full = append([]string{"--root", store}, args...)
	}
	cmd := exec.CommandContext(ctx, strataBin, full...)
	cmd.Env = env()
	cmd.Dir = workDir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{args: full, stdout: out.String(), stderr: errb.String(), code: -1}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("strata %v: %v", full, err)
	}
	return r
}

func strata(t *testing.T, store string, args ...string) result {
	t.Helper()
	r := strataRun(t, store, "", args...)
	if r.code != 0 {
		t.Fatalf("want success:\n%s", r)
	}
	return r
}

// env is ours without STRATA_* settings, with no registry configuration.
func env() []string {
	var e []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STRATA_") {
			e = append(e, kv)
		}
	}
	return append(e, "STRATA_CONFIG="+filepath.Join(workDir, "no-config.json"))
}

// newStore makes a store with base:latest imported; it is removed (after
// checking nothing is left mounted in it) when the test ends.
func newStore(t *testing.T) string {
	t.Helper()
	requireBuild(t)
	dir, err := os.MkdirTemp(workDir, "store-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if m := mountsUnder(dir); len(m) > 0 {
			t.Errorf("mounts left under the store: %v", m)
			return
		}
		os.RemoveAll(dir)
	})
	strata(t, dir, "import", "--change", `CMD ["sh"]`, "--change", "ENV PATH=/bin", baseRoot, "base:latest")
	return dir
}

func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// buildContext writes files (name -> content) into a new directory.
func buildContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
