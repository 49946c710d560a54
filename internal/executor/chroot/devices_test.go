package chroot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/testsuite"
)

// warnings returns a Runner whose warnings are collected.
func warnings() (*Runner, *[]string) {
	var w []string
	return &Runner{Warn: func(msg string) { w = append(w, msg) }}, &w
}

// TestDevicesNodev: on a filesystem mounted nodev, device nodes can be
// made but not opened: the run goes without them, and the Runner warns
// once, saying so.
func TestDevicesNodev(t *testing.T) {
	requireRoot(t)
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NODEV, "mode=755"); err != nil {
		t.Skipf("mount a nodev tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	rootfs := filepath.Join(mnt, "rootfs")
	if err := os.Rename(testsuite.Rootfs(t, true), rootfs); err != nil {
		// another filesystem: copy busybox over
		if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(testsuite.BusyboxPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin/sh")); err != nil {
			t.Fatal(err)
		}
	}
	r, warned := warnings()
	for i := 0; i < 2; i++ {
		code, out, err := run(t, r, executor.Process{Rootfs: rootfs, Args: []string{"/bin/sh", "-c", "test -e /dev || echo no-dev; echo ran"}})
		if err != nil || code != 0 || out != "no-dev\nran\n" {
			t.Fatalf("Run = %d, %v, %q", code, err, out)
		}
	}
	if len(*warned) != 1 || !strings.Contains((*warned)[0], "cannot be opened") || !strings.Contains((*warned)[0], "/dev/null") {
		t.Errorf("warnings %q, want one that says /dev/null cannot be opened", *warned)
	}
	t.Logf("warning: %s", (*warned)[0])
	if _, err := os.Lstat(filepath.Join(rootfs, "dev")); err == nil {
		t.Error("/dev left in the rootfs")
	}
}

// TestDevUnusual: a /dev that is a symlink gets its nodes in the directory
// it names (inside the rootfs), removed afterwards; a /dev that is a file
// leaves the nodes out, with a warning, and is kept.
func TestDevUnusual(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	if err := os.MkdirAll(filepath.Join(rootfs, "lib/devices"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/lib/devices", filepath.Join(rootfs, "dev")); err != nil {
		t.Fatal(err)
	}
	r, warned := warnings()
	code, out, err := run(t, r, executor.Process{Rootfs: rootfs, Args: []string{"/bin/sh", "-c", "echo x > /dev/null && test -c /lib/devices/zero && echo ok"}})
	if err != nil || code != 0 || out != "ok\n" || len(*warned) != 0 {
		t.Fatalf("/dev a symlink: Run = %d, %v, %q, warnings %q", code, err, out, *warned)
	}
	if ents, err := os.ReadDir(filepath.Join(rootfs, "lib/devices")); err != nil || len(ents) != 0 {
		t.Errorf("left in /lib/devices: %v %v", ents, err)
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "dev")); err != nil || target != "/lib/devices" {
		t.Errorf("/dev symlink changed: %q %v", target, err)
	}

	rootfs = testsuite.Rootfs(t, true)
	if err := os.WriteFile(filepath.Join(rootfs, "dev"), []byte("a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, err = run(t, r, executor.Process{Rootfs: rootfs, Args: []string{"/bin/sh", "-c", "echo ran"}})
	if err != nil || code != 0 || out != "ran\n" {
		t.Fatalf("/dev a file: Run = %d, %v, %q", code, err, out)
	}
	if len(*warned) != 1 || !strings.Contains((*warned)[0], "/dev is not a directory") {
		t.Errorf("warnings %q", *warned)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "dev")); err != nil || string(b) != "a file" {
		t.Errorf("/dev file changed: %q %v", b, err)
	}
}
