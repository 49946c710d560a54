package chroot

import (
	"os"
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

func TestSuite(t *testing.T) {
	requireRoot(t)
	testsuite.Run(t, testsuite.Config{
		New: func(t *testing.T) executor.Executor {
			return &Runner{Warn: func(msg string) { t.Errorf("warning: %s", msg) }}
		},
	})
}
