// Package binfmt says how this machine runs programs built for a
// platform: natively, or through an emulator registered with the kernel's
// binfmt_misc (QEMU user mode: Debian's qemu-user-static, or
// tonistiigi/binfmt), and when neither, what one command registers it.
//
// A RUN step for a foreign platform executes its binaries as usual; the
// kernel hands each to the registered interpreter. Inside a container or a
// chroot the interpreter's path does not exist, so the registration must
// have the F flag (the kernel opens the interpreter when it is registered:
// Debian's and tonistiigi/binfmt's registrations have it).
package binfmt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/platform"
)

// Dir is where the kernel's binfmt_misc is mounted.
const Dir = "/proc/sys/fs/binfmt_misc"

// ErrNoEmulator is wrapped by Check's error when p's programs cannot run
// here.
var ErrNoEmulator = errors.New("no emulator")

// qemuNames are QEMU's names of the architectures (GOARCH names).
var qemuNames = map[string]string{
	"amd64": "x86_64", "386": "i386", "arm64": "aarch64", "arm": "arm", "ppc64le": "ppc64le",
	"ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64", "mips64le": "mips64el",
	"mips64": "mips64", "mipsle": "mipsel", "mips": "mips", "loong64": "loongarch64",
}

// Check returns how programs for p run here: natively (emulator "": the
// host's platform, or 386 on amd64), or through the binfmt_misc handler
// named emulator (e.g. "qemu-aarch64") found in dir (Dir). When neither,
// the error, which wraps ErrNoEmulator, says what is missing and the
// command that registers it.
func Check(dir string, p v1.Platform) (emulator string, err error) {
	host := platform.Host()
	if platform.Same(p, host) || (host.Architecture == "amd64" && p.Architecture == "386") {
		return "", nil
	}
	name, ok := qemuNames[p.Architecture]
	if !ok || p.OS != "linux" {
		return "", fmt.Errorf("%w: strata knows no emulator for %s", ErrNoEmulator, platform.Format(p))
	}
	handler := "qemu-" + name
	b, err := os.ReadFile(filepath.Join(dir, handler))
	if err != nil {
		return "", fmt.Errorf("%w: RUN for %s needs %s registered with binfmt_misc (%s): %s",
			ErrNoEmulator, platform.Format(p), handler, why(dir, err), register(dir, name, p))
	}
	lines := strings.Split(string(b), "\n")
	if strings.TrimSpace(lines[0]) != "enabled" {
		return "", fmt.Errorf("%w: RUN for %s: the binfmt_misc handler %s is disabled; as root: echo 1 > %s",
			ErrNoEmulator, platform.Format(p), handler, filepath.Join(dir, handler))
	}
	for _, l := range lines {
		if flags, ok := strings.CutPrefix(l, "flags:"); ok && !strings.Contains(flags, "F") {
			return "", fmt.Errorf("%w: RUN for %s: the binfmt_misc handler %s was registered without the F flag, so a container cannot find its interpreter; register it again with F (e.g. docker run --privileged --rm tonistiigi/binfmt --install %s)",
				ErrNoEmulator, platform.Format(p), handler, p.Architecture)
		}
	}
	return handler, nil
}

// why says why dir has no handler: binfmt_misc is not mounted there, or
// nothing is registered.
func why(dir string, err error) string {
	if _, serr := os.Stat(filepath.Join(dir, "register")); serr != nil {
		return "binfmt_misc is not mounted at " + dir
	}
	if errors.Is(err, os.ErrNotExist) {
		return "it is not registered"
	}
	return err.Error()
}

// register is the one command that registers QEMU for the architecture
// (QEMU's name), from this machine's qemu-user-static when it has one.
func register(dir, name string, p v1.Platform) string {
	conf := "/usr/lib/binfmt.d/qemu-" + name + ".conf"
	if _, err := os.Stat(conf); err == nil && dir == Dir {
		return fmt.Sprintf("as root: grep -q binfmt_misc /proc/mounts || mount -t binfmt_misc binfmt_misc %s; cat %s > %s/register", dir, conf, dir)
	}
	if runtime.GOOS == "linux" {
		return fmt.Sprintf("install QEMU (Debian/Ubuntu: apt-get install qemu-user-static), or as root: docker run --privileged --rm tonistiigi/binfmt --install %s", p.Architecture)
	}
	return "register QEMU user mode with binfmt_misc"
}

// Register registers QEMU for arch (QEMU's name, e.g. "aarch64") with the
// kernel's binfmt_misc at Dir, from Debian's qemu-user-static
// (/usr/lib/binfmt.d/qemu-ARCH.conf, which has the F flag), mounting
// binfmt_misc first if need be. It returns what undoes exactly what it did
// (nothing when the handler was registered already). It needs root.
func Register(arch string) (undo func() error, err error) {
	handler := filepath.Join(Dir, "qemu-"+arch)
	if _, err := os.Stat(handler); err == nil {
		return func() error { return nil }, nil
	}
	conf := "/usr/lib/binfmt.d/qemu-" + arch + ".conf"
	line, err := os.ReadFile(conf)
	if err != nil {
		return nil, fmt.Errorf("register qemu-%s: %w (apt-get install qemu-user-static)", arch, err)
	}
	var undos []func() error
	undoAll := func() error {
		var errs []error
		for i := len(undos) - 1; i >= 0; i-- {
			errs = append(errs, undos[i]())
		}
		return errors.Join(errs...)
	}
	if _, err := os.Stat(filepath.Join(Dir, "register")); err != nil {
		if err := unix.Mount("binfmt_misc", Dir, "binfmt_misc", 0, ""); err != nil {
			return nil, fmt.Errorf("mount binfmt_misc at %s: %w", Dir, err)
		}
		undos = append(undos, func() error { return unix.Unmount(Dir, 0) })
	}
	if err := os.WriteFile(filepath.Join(Dir, "register"), line, 0o200); err != nil {
		_ = undoAll()
		return nil, fmt.Errorf("register qemu-%s: %w", arch, err)
	}
	undos = append(undos, func() error { return os.WriteFile(handler, []byte("-1"), 0o200) })
	return undoAll, nil
}
