package chroot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/testsuite"
)

// killedEnv, in a process TestStrataKilled starts, holds the rootfs and
// the markers of the run that process makes before it is killed.
const killedEnv = "STRATA_CHROOT_TEST_KILLED"

// TestStrataKilled: when strata dies (SIGKILL: no cleanup of its own
// runs), the init sees its control pipe end and kills and reaps every
// process of the run, detached ones too, and exits.
func TestStrataKilled(t *testing.T) {
	requireRoot(t)
	if v := os.Getenv(killedEnv); v != "" {
		f := strings.Fields(v)
		script := fmt.Sprintf("sleep %s & setsid sleep %s & sleep %s", f[1], f[2], f[3])
		_, err := (&Runner{}).Run(context.Background(), executor.Process{ID: "strata-killed", Rootfs: f[0], Args: []string{"/bin/sh", "-c", script}})
		t.Fatalf("Run returned: %v", err)
	}
	rootfs := testsuite.Rootfs(t, true)
	m := []string{testsuite.Marker(), testsuite.Marker(), testsuite.Marker()}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStrataKilled$", "-test.count=1")
	cmd.Env = append(os.Environ(), killedEnv+"="+rootfs+" "+strings.Join(m, " "))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	running := func() bool {
		for _, mk := range m {
			if len(testsuite.Sleeping(mk)) != 1 {
				return false
			}
		}
		return true
	}
	if !waitFor(10*time.Second, running) {
		t.Fatal("the run did not start")
	}
	init := childNamed(t, cmd.Process.Pid, "strata-chroot-init")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	gone := func() bool {
		for _, mk := range m {
			if len(testsuite.Sleeping(mk)) != 0 {
				return false
			}
		}
		return true
	}
	if !waitFor(5*time.Second, gone) {
		t.Error("the run's processes outlived strata")
		for _, mk := range m {
			for _, pid := range testsuite.Sleeping(mk) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if !waitFor(5*time.Second, func() bool { return !alive(init) }) {
		t.Errorf("the init (pid %d) outlived strata and its run", init)
	}
}

// childNamed returns the pid of the child of ppid whose argv[0] is name.
func childNamed(t *testing.T, ppid int, name string) int {
	t.Helper()
	proc, err := openProc()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(proc.fd)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || proc.parent(pid) != ppid {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if argv0, _, _ := strings.Cut(string(b), "\x00"); argv0 == name {
			return pid
		}
	}
	t.Fatalf("no %s below %d", name, ppid)
	return 0
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
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
