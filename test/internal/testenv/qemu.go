package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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

// binfmtDir is where the kernel's binfmt_misc is mounted.
const binfmtDir = "/proc/sys/fs/binfmt_misc"

// RequireQEMU makes sure the kernel runs programs of QEMU architecture
// arch (e.g. "aarch64") through qemu-user-static with the F flag, as a
// foreign RUN needs. Where it is not registered, it registers Debian's
// qemu-user-static (as root, mounting binfmt_misc if need be), and undoes
// exactly that when the test ends, leaving the kernel as it found it;
// where it cannot, the test is skipped.
func RequireQEMU(t testing.TB, arch string) {
	t.Helper()
	handler := filepath.Join(binfmtDir, "qemu-"+arch)
	if b, err := os.ReadFile(handler); err == nil {
		if strings.HasPrefix(string(b), "enabled") && strings.Contains(string(b), "flags: ") && strings.Contains(strings.SplitN(string(b), "flags:", 2)[1], "F") {
			return
		}
		t.Skipf("%s is registered but disabled or without the F flag", handler)
	}
	conf := "/usr/lib/binfmt.d/qemu-" + arch + ".conf"
	if os.Geteuid() != 0 {
		t.Skipf("qemu-%s is not registered with binfmt_misc, and only root may", arch)
	}
	line, err := os.ReadFile(conf)
	if err != nil {
		t.Skipf("qemu-%s is not registered and %s is missing (apt-get install qemu-user-static): %v", arch, conf, err)
	}
	if _, err := os.Stat(filepath.Join(binfmtDir, "register")); err != nil {
		if out, err := exec.Command("mount", "-t", "binfmt_misc", "binfmt_misc", binfmtDir).CombinedOutput(); err != nil {
			t.Skipf("mount binfmt_misc: %v %s", err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("umount", binfmtDir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v %s", binfmtDir, err, out)
			}
		})
	}
	if err := os.WriteFile(filepath.Join(binfmtDir, "register"), line, 0o200); err != nil {
		t.Skipf("register qemu-%s: %v", arch, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(handler, []byte("-1"), 0o200); err != nil {
			t.Errorf("unregister qemu-%s: %v", arch, err)
		}
	})
}
