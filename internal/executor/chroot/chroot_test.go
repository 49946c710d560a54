package chroot

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/testsuite"
)

func TestMain(m *testing.M) {
	if IsInit() {
		Init()
	}
	os.Exit(m.Run())
}

// requireRoot skips the test unless it runs as root with busybox-static.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chroot runs need root (chroot, owners, devices); run the tests as root")
	}
	if _, err := os.Stat(testsuite.BusyboxPath); err != nil {
		t.Skip("busybox not found at /bin/busybox (apt-get install busybox-static)")
	}
}

// haveCap reports whether this process has capability c in its effective set.
func haveCap(t testing.TB, c uint) bool {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return caps&(1<<c) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}

// TestSuite runs the executor suite. Without CAP_MKNOD (see
// TestWithoutMknod) the runs go without device nodes, and each Runner warns
// once; with it, a warning is an error.
func TestSuite(t *testing.T) {
	requireRoot(t)
	mknod := haveCap(t, capMknod)
	t.Logf("CAP_MKNOD: %v", mknod)
	testsuite.Run(t, testsuite.Config{
		New: func(t *testing.T) executor.Executor {
			r := &Runner{}
			var mu sync.Mutex
			var warnings []string
			r.Warn = func(msg string) {
				mu.Lock()
				defer mu.Unlock()
				warnings = append(warnings, msg)
			}
			t.Cleanup(func() {
				switch {
				case mknod && len(warnings) > 0:
					t.Errorf("warnings with CAP_MKNOD: %q", warnings)
				case len(warnings) > 1:
					t.Errorf("more than one warning: %q", warnings)
				case len(warnings) == 1 && !strings.Contains(warnings[0], "mknod is not permitted"):
					t.Errorf("warning %q does not say mknod is not permitted", warnings[0])
				}
			})
			return r
		},
		NoDevices: !mknod,
	})
}

// capMknod is CAP_MKNOD's number.
const capMknod = 27

func run(t *testing.T, r *Runner, p executor.Process) (int, string, error) {
	t.Helper()
	var out strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(b)
	})
	p.Stdout, p.Stderr = w, w
	if p.ID == "" {
		p.ID = "strata-chroot-test"
	}
	code, err := r.Run(context.Background(), p)
	mu.Lock()
	defer mu.Unlock()
	return code, out.String(), err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func BenchmarkRunTrue(b *testing.B) {
	requireRoot(b)
	r := &Runner{}
	rootfs := testsuite.Rootfs(b, true)
	for b.Loop() {
		code, err := r.Run(context.Background(), executor.Process{ID: "strata-bench", Rootfs: rootfs, Args: []string{"/bin/true"}})
		if err != nil || code != 0 {
			b.Fatalf("code %d err %v", code, err)
		}
	}
}
