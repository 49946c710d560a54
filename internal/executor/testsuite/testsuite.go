// Package testsuite is the test suite every executor.Executor passes, in the
// spirit of containerd's snapshots/testsuite and this repository's
// snapshot/testsuite: the same scenarios, run against each implementation
// (runc, chroot), so that a RUN behaves the same whichever runs it. The
// scenarios cover exit codes (also 128+N for a signal), environment and the
// default PATH, the working directory (created, owned by the user), USER by
// name and by uid:gid, output (separate streams, one ordered stream for one
// writer, streamed while the process runs), stdin, a missing executable,
// cancellation (the whole process tree ends, detached processes too, and
// Run returns promptly), processes left behind by a process that ended,
// device nodes and the host's resolv.conf and hosts, /proc, /sys and
// /dev/fd (as root and as a user), a rootfs left exactly as
// it was by a run that changes nothing, files written by the command,
// mounts (binds, a cache, a tmpfs, a secret) and what they leave, and
// concurrent runs that do not disturb each other.
//
// The root filesystems are made by the suite from Debian's busybox-static
// (/bin/busybox). The suite needs root (owners, users, devices).
package testsuite

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/executor"
)

// Config is what the suite needs to know of the executor under test.
type Config struct {
	// New returns the executor under test; it may register cleanups (e.g.
	// leftover checks) with t.
	New func(t *testing.T) executor.Executor
	// IDPrefix starts every Process.ID the suite makes (default "strata-ts-").
	IDPrefix string
	// NoDevices is set when the executor cannot give a RUN the device nodes
	// (/dev/null, /dev/zero, ...) a rootfs lacks: the Devices scenario then
	// checks only that the run works without them and leaves nothing, and
	// the other scenarios' rootfs have a regular file as /dev/null.
	NoDevices bool
}

// BusyboxPath is where the suite takes busybox from (Debian's busybox-static).
const BusyboxPath = "/bin/busybox"

// Run runs the suite against c.New's executors.
func Run(t *testing.T, c Config) {
	if os.Geteuid() != 0 {
		t.Skip("the executor suite needs root (owners, users, devices); run the tests as root")
	}
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("busybox not found at %s (apt-get install busybox-static)", BusyboxPath)
	}
	if c.IDPrefix == "" {
		c.IDPrefix = "strata-ts-"
	}
	s := &suite{Config: c}
	for _, sc := range []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"ExitCode", s.testExitCode},
		{"Signal", s.testSignal},
		{"Env", s.testEnv},
		{"Cwd", s.testCwd},
		{"User", s.testUser},
		{"Output", s.testOutput},
		{"Streamed", s.testStreamed},
		{"Stdin", s.testStdin},
		{"MissingExecutable", s.testMissingExecutable},
		{"PathInRootfs", s.testPathInRootfs},
		{"Cancel", s.testCancel},
		{"Detached", s.testDetached},
		{"Devices", s.testDevices},
		{"HostFiles", s.testHostFiles},
		{"Proc", s.testProc},
		{"NoChanges", s.testNoChanges},
		{"OwnFilesKept", s.testOwnFilesKept},
		{"FilesStay", s.testFilesStay},
		{"Mounts", s.testMounts},
		{"Concurrent", s.testConcurrent},
	} {
		t.Run(sc.name, sc.fn)
	}
}

type suite struct {
	Config
	n atomic.Int64 // ids
}

// id returns a new process id.
func (s *suite) id() string {
	return fmt.Sprintf("%s%d-%d", s.IDPrefix, os.Getpid(), s.n.Add(1))
}

// applets are the busybox commands a rootfs has in /bin.
var applets = []string{"sh", "id", "ls", "cat", "echo", "pwd", "sleep", "true", "false", "touch", "mkdir",
	"env", "head", "wc", "setsid", "kill", "rm", "stat", "test", "printf", "grep", "sort", "tr", "readlink"}

// Rootfs makes a root filesystem in a new directory: /bin/busybox with
// applet links and, with etc, /etc/passwd and /etc/group with root, app
// (1000, in wheel and staff) and nobody. There is no /dev, /proc, /sys,
// /etc/hosts or /etc/resolv.conf.
func Rootfs(t testing.TB, etc bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	bin := filepath.Join(dir, "bin")
	must(t, os.MkdirAll(bin, 0o755))
	data, err := os.ReadFile(BusyboxPath)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755))
	for _, a := range applets {
		must(t, os.Symlink("busybox", filepath.Join(bin, a)))
	}
	if !etc {
		return dir
	}
	writeFiles(t, dir, map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nwheel:x:10:app\napp:x:1000:\nstaff:x:50:app,nobody\nnogroup:x:65534:\n",
	})
	return dir
}

// rootfs is Rootfs(t, true) for a scenario that is not about devices:
// when the executor gives no device nodes (NoDevices), it has an empty
// regular file as /dev/null, which shells open for a background job's
// stdin ("cmd &" fails without it).
func (s *suite) rootfs(t testing.TB) string {
	t.Helper()
	dir := Rootfs(t, true)
	if s.NoDevices {
		must(t, os.Mkdir(filepath.Join(dir, "dev"), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "dev/null"), nil, 0o666))
		must(t, os.Chmod(filepath.Join(dir, "dev/null"), 0o666))
	}
	return dir
}

// writeFiles writes files (0644) below dir, making their directories.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(content), 0o644))
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

// run runs p (with a new ID, and stdout and stderr to one buffer) and
// returns the exit code and the output; an error fails the test.
func (s *suite) run(t *testing.T, e executor.Executor, p executor.Process) (int, string) {
	t.Helper()
	var out SyncBuffer
	p.Stdout, p.Stderr = &out, &out
	if p.ID == "" {
		p.ID = s.id()
	}
	code, err := e.Run(context.Background(), p)
	if err != nil {
		t.Fatalf("Run %q: %v (output %q)", p.Args, err, out.String())
	}
	return code, out.String()
}

// SyncBuffer is a bytes.Buffer safe for concurrent use: a process's
// output as executors' tests collect it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// Marker returns an argument for sleep that names one process of one test
// among every process on the machine: a run's processes are found by it
// (Sleeping) wherever they are (a container's processes are visible from
// the host).
func Marker() string { return strconv.Itoa(100000000 + rand.IntN(800000000)) }

// Sleeping returns the pids of the `sleep MARKER` processes alive (or not
// yet reaped) on the machine.
func Sleeping(marker string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 2 && filepath.Base(args[0]) == "sleep" && args[1] == marker {
			pids = append(pids, pid)
		}
	}
	return pids
}
