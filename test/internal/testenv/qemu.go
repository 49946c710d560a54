package testenv

import (
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/strata-build/strata/internal/binfmt"
)

// ARM64Busybox is Debian's busybox-static for arm64, unpacked by
// scripts/install-deps.sh (STRATA_ARM64_BUSYBOX_DIR moves it).
func ARM64Busybox() string {
	dir := os.Getenv("STRATA_ARM64_BUSYBOX_DIR")
	if dir == "" {
		dir = "/var/cache/strata-test/busybox-arm64"
	}
	return filepath.Join(dir, "bin", "busybox")
}

// RequireQEMU makes sure the kernel runs programs of QEMU architecture
// arch (e.g. "aarch64", goArch "arm64") through qemu-user-static with the
// F flag (binfmt.Check), as a foreign RUN needs. Where it is not
// registered, it registers Debian's
// qemu-user-static (binfmt.Register: as root, mounting binfmt_misc if need
// be), and undoes exactly that when the test ends, leaving the kernel as
// it found it; where it cannot, the test is skipped.
func RequireQEMU(t testing.TB, arch, goArch string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(binfmt.Dir, "qemu-"+arch)); err == nil {
		if _, err := binfmt.Check(binfmt.Dir, v1.Platform{OS: "linux", Architecture: goArch}); err != nil {
			t.Skipf("%v", err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skipf("qemu-%s is not registered with binfmt_misc, and only root may", arch)
	}
	undo, err := binfmt.Register(arch)
	if err != nil {
		t.Skipf("%v", err)
	}
	t.Cleanup(func() {
		if err := undo(); err != nil {
			t.Errorf("undo the registration of qemu-%s: %v", arch, err)
		}
	})
}
