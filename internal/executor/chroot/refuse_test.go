package chroot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/testsuite"
)

// TestRefused: what chroot isolation cannot give is an error that says
// why, and nothing runs.
func TestRefused(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	for _, tc := range []struct {
		name   string
		change func(p *executor.Process)
		want   string
	}{
		{"network none", func(p *executor.Process) { p.Network = executor.NetworkNone }, `network mode "none" needs a network namespace, which chroot isolation cannot create`},
		{"network private", func(p *executor.Process) { p.Network = executor.NetworkPrivate }, `network mode "private" needs a network namespace`},
		{"terminal", func(p *executor.Process) { p.Terminal = true }, "cannot give the process a terminal"},
		{"mount type", func(p *executor.Process) {
			p.Mounts = []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}}
		}, `mount /proc: type "proc": chroot isolation emulates bind and tmpfs mounts only`},
		{"mount on /", func(p *executor.Process) {
			p.Mounts = []specs.Mount{{Destination: "/", Type: "bind", Source: t.TempDir()}}
		}, "the destination must be absolute and not /"},
		{"mount of the rootfs", func(p *executor.Process) {
			p.Mounts = []specs.Mount{{Destination: "/host", Type: "bind", Source: "/", Options: []string{"ro"}}}
		}, "mount /host: the source / holds the rootfs"},
		{"mount source", func(p *executor.Process) {
			p.Mounts = []specs.Mount{{Destination: "/x", Type: "bind", Source: "/no/such/dir"}}
		}, "mount /x: source: lstat /no: no such file or directory"},
		{"host root", func(p *executor.Process) { p.Rootfs = "/" }, "is the host's root directory"},
		{"rootfs missing", func(p *executor.Process) { p.Rootfs = filepath.Join(rootfs, "nope") }, "no such file or directory"},
		{"bad id", func(p *executor.Process) { p.ID = "a/b" }, "invalid container id"},
	} {
		p := executor.Process{ID: "strata-refused", Rootfs: rootfs, Args: []string{"/bin/sh", "-c", "touch /ran"}}
		tc.change(&p)
		code, _, err := run(t, &Runner{}, p)
		if code != -1 || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Run = %d, %v; want an error saying %q", tc.name, code, err, tc.want)
		}
		if _, err := os.Stat(filepath.Join(rootfs, "ran")); err == nil {
			t.Fatalf("%s: the command ran", tc.name)
		}
	}
	// Host network and the insecure mode run (there is nothing to lift).
	code, out, err := run(t, &Runner{}, executor.Process{Rootfs: rootfs, Network: executor.NetworkHost, Security: executor.SecurityInsecure, Args: []string{"echo", "ok"}})
	if code != 0 || err != nil || out != "ok\n" {
		t.Errorf("host network, insecure: Run = %d, %v, %q", code, err, out)
	}
}

// TestNoInit: a Program that is not an init (does not call Init) is an
// error that says so, not a hang.
func TestNoInit(t *testing.T) {
	requireRoot(t)
	rootfs := testsuite.Rootfs(t, true)
	for _, program := range []string{"/bin/true", "/no/such/program"} {
		code, _, err := run(t, &Runner{Program: program}, executor.Process{Rootfs: rootfs, Args: []string{"/bin/true"}})
		if code != -1 || err == nil {
			t.Errorf("%s: Run = %d, %v; want an error", program, code, err)
		}
		t.Logf("%s: %v", program, err)
	}
	code, _, err := run(t, &Runner{Program: "/bin/true"}, executor.Process{Rootfs: rootfs, Args: []string{"/bin/true"}})
	if err == nil || !strings.Contains(err.Error(), "calls chroot.Init") {
		t.Errorf("Run = %d, %v; want an error that names chroot.Init", code, err)
	}
}
