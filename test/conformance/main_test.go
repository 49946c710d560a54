// Package conformance builds the Dockerfile cases under testdata/cases with the
// strata binary and compares each resulting image with the image BuildKit
// v0.34 produced for the same case (flattened to testdata/cases/*/expected.json).
//
// It needs root, runc and Debian's busybox-static (/bin/busybox); without them
// the builds are skipped (the flattener's self-checks still run).
//
// Environment:
//
//	CONFORMANCE_CASE_TIMEOUT  seconds allowed per build (default 300)
//	CONFORMANCE_JOBS          cases built at once, 1 or 2 (default 1)
//	CONFORMANCE_KEEP=1        keep the work folder (per case: build.log, out.tar, got.json, diff.txt)
//	CONFORMANCE_BUSYBOX       busybox binary for the base image (default /bin/busybox)
package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// basePATH is the PATH of the kit's busybox image.
const basePATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// env is what TestMain prepared for the cases.
type suiteEnv struct {
	skip    string // why the builds cannot run; "" when they can
	work    string // temp folder: binary, store, per-case folders
	strata  string // the binary under test
	store   string // strata --root shared by every case
	environ []string
	// leftovers is set when strata left mounts or containers: the work
	// folder is then kept rather than removed through them.
	leftovers atomic.Bool
}

func (s *suiteEnv) markLeftovers() { s.leftovers.Store(true) }

var suite suiteEnv

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if reason := prerequisites(); reason != "" {
		suite.skip = reason
		return m.Run()
	}
	work, err := os.MkdirTemp("", "strata-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 2
	}
	suite.work = work
	keep := os.Getenv("CONFORMANCE_KEEP") != ""
	defer func() {
		if keep || suite.leftovers.Load() {
			fmt.Fprintln(os.Stderr, "conformance: work folder kept:", work)
			return
		}
		if err := os.RemoveAll(work); err != nil {
			fmt.Fprintln(os.Stderr, "conformance: removing the work folder:", err)
		}
	}()
	if err := setUp(work); err != nil {
		fmt.Fprintln(os.Stderr, "conformance: set-up failed:", err)
		return 2
	}
	code := m.Run()
	if err := checkNothingLeft(); err != nil {
		// Removing the work folder could go through a mount still in place.
		suite.markLeftovers()
		fmt.Fprintln(os.Stderr, "conformance:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func busyboxPath() string {
	if p := os.Getenv("CONFORMANCE_BUSYBOX"); p != "" {
		return p
	}
	return "/bin/busybox"
}

// prerequisites says why the builds cannot run here, or "".
func prerequisites() string {
	if os.Geteuid() != 0 {
		return "conformance builds need root (overlayfs mounts, runc, chown); run go test as root"
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return "conformance builds need runc in PATH (apt-get install runc)"
	}
	if out, err := exec.Command(busyboxPath(), "--list").Output(); err != nil || len(out) == 0 {
		return "conformance builds need a static busybox at " + busyboxPath() + " (apt-get install busybox-static) for the base image"
	}
	return ""
}

func setUp(work string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	suite.strata = filepath.Join(work, "strata")
	build := exec.CommandContext(ctx, "go", "build", "-o", suite.strata, "./cmd/strata")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/strata: %v\n%s", err, out)
	}

	suite.store = filepath.Join(work, "store")
	// No registry is needed: busybox:latest is imported into the store below.
	// Any attempt to reach a registry other than 127.0.0.1 fails fast through a
	// proxy nobody listens on, and no host configuration is read.
	suite.environ = append(filteredEnviron(),
		"STRATA_ROOT="+suite.store,
		"STRATA_CONFIG="+filepath.Join(work, "no-registry-config.json"),
		"DOCKER_CONFIG="+filepath.Join(work, "docker-config"),
		"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9",
		"http_proxy=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9",
		"NO_PROXY=", "no_proxy=",
	)

	rootfs := filepath.Join(work, "busybox-rootfs")
	if err := makeBusyboxRootfs(rootfs, busyboxPath()); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	imp := exec.CommandContext(ctx, suite.strata, "--root", suite.store, "import",
		"--change", `CMD ["sh"]`, "--change", "ENV PATH="+basePATH, rootfs, "busybox:latest")
	imp.Env = suite.environ
	if out, err := imp.CombinedOutput(); err != nil {
		return fmt.Errorf("strata import of the busybox rootfs: %v\n%s", err, out)
	}
	return os.RemoveAll(rootfs)
}

// filteredEnviron is the environment without what would change strata's
// behaviour or let it reach the network.
func filteredEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "STRATA_ROOT", "STRATA_CONFIG", "STRATA_REGISTRY_MIRRORS", "DOCKER_CONFIG",
			"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// moduleRoot is the folder holding go.mod (the tests run in the package folder).
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		abs, err := filepath.Abs(filepath.Join("..", "..", "go.mod"))
		if err != nil {
			return "", err
		}
		gomod = abs
	}
	if _, err := os.Stat(gomod); err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	return filepath.Dir(gomod), nil
}

// makeBusyboxRootfs writes the kit's busybox image (make-bases.sh) as a
// folder: busybox and one symlink per applet in /bin, /etc/passwd and
// /etc/group, /tmp 1777, /root 0700, /home/app 1000:1000, empty /dev /proc /sys.
func makeBusyboxRootfs(root, busybox string) error {
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{
		{"", 0o755}, {"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"home", 0o755},
		{"home/app", 0o755}, {"proc", 0o755}, {"root", 0o700}, {"sys", 0o755},
		{"tmp", 0o777 | os.ModeSticky},
	} {
		p := filepath.Join(root, d.name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil { // not subject to the umask
			return err
		}
	}
	if err := os.Lchown(filepath.Join(root, "home/app"), 1000, 1000); err != nil {
		return err
	}

	bin, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"bin/busybox", bin, 0o755},
		{"etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" +
			"app:x:1000:1000:app:/home/app:/bin/sh\n"), 0o644},
		{"etc/group", []byte("root:x:0:\nnobody:x:65534:\napp:x:1000:\n"), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(root, f.name)
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
	}

	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", busybox, err)
	}
	applets := map[string]bool{}
	for _, a := range strings.Split(string(out), "\n") {
		a = strings.TrimSpace(a)
		if a == "" || a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		applets[a] = true
	}
	names := make([]string, 0, len(applets))
	for a := range applets {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}
	return nil
}

// checkNothingLeft fails when strata left mounts under its store or runc
// containers in its state folder.
func checkNothingLeft() error {
	var problems []string
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mi), "\n") {
			fields := strings.Fields(line)
			if len(fields) > 4 && strings.HasPrefix(fields[4], suite.work+"/") {
				problems = append(problems, "mount left behind: "+fields[4])
			}
		}
	}
	state := filepath.Join(suite.store, "runc")
	if _, err := os.Stat(state); err == nil {
		out, err := exec.Command("runc", "--root", state, "list", "-q").Output()
		if err != nil {
			problems = append(problems, fmt.Sprintf("runc --root %s list: %v", state, err))
		} else if ids := strings.Fields(string(bytes.TrimSpace(out))); len(ids) > 0 {
			problems = append(problems, "runc containers left behind: "+strings.Join(ids, " "))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("strata left things behind:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}
