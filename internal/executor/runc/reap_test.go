package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/executor/testsuite"

	"golang.org/x/sys/unix"
)

// zombies lists this process's children that have exited and are not reaped.
func zombies(t testing.TB) []int {
	t.Helper()
	files, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil || len(files) == 0 {
		t.Skipf("no /proc/self/task/*/children: %v", err)
	}
	var z []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(s)
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if i := bytes.LastIndexByte(st, ')'); err == nil && i >= 0 && i+2 < len(st) && st[i+2] == 'Z' {
				z = append(z, pid)
			}
		}
	}
	return z
}

// checkNoNewZombies fails the test for every zombie child of this process
// that is not in before.
func checkNoNewZombies(t testing.TB, before []int) {
	t.Helper()
	for _, pid := range zombies(t) {
		if !slices.Contains(before, pid) {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			t.Errorf("zombie child left: pid %d (%s)", pid, strings.TrimSpace(string(comm)))
		}
	}
}

// TestNoZombieAfterCancel cancels runs at various points from their start
// and checks that no container process is left unreaped.
func TestNoZombieAfterCancel(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	before := zombies(t)
	for i, delay := range []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := r.Run(ctx, Process{ID: fmt.Sprintf("%szcancel-%d", testPrefix, i), Rootfs: rootfs, Args: sh("sleep 100")})
			errc <- err
		}()
		time.Sleep(delay)
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("delay %v: err = %v, want context.Canceled", delay, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("delay %v: Run did not return after cancel", delay)
		}
	}
	checkNoNewZombies(t, before)
}

// killingRuntime writes a runc wrapper that runs `runc run --detach` to its
// end, removes the pid file runc wrote and then dies of SIGKILL: as a runc
// killed after it started the container, before it wrote the pid file.
func killingRuntime(t *testing.T) string {
	t.Helper()
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
case " $* " in *" run "*) ;; *) exec ` + runc + ` "$@";; esac
` + runc + ` "$@"
prev=
for a; do [ "$prev" = --pid-file ] && rm -f "$a"; prev=$a; done
kill -9 $$
`
	p := filepath.Join(t.TempDir(), "runc-killed")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRuncKilledDetached: when runc dies after it started the container and
// before it wrote the pid file, Run fails, and the container's process,
// reparented to strata, is killed and reaped, and the container deleted.
func TestRuncKilledDetached(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	r.Runtime = killingRuntime(t)
	rootfs := newRootfs(t)
	before := zombies(t)
	start := time.Now()
	var out testsuite.SyncBuffer
	code, err := r.Run(context.Background(), Process{ID: testPrefix + "runc-killed", Rootfs: rootfs, Stdout: &out, Stderr: &out, Args: sh("echo started; sleep 100")})
	if err == nil || !strings.Contains(err.Error(), "runc: signal: killed") {
		t.Errorf("Run = %d, %v; want an error saying runc was killed", code, err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("Run took %v", d)
	}
	checkNoNewZombies(t, before)
}

// TestExitCodeKilledProcess: a process killed by signal N exits with 128+N,
// whether runc runs detached or in the foreground (stdin a terminal).
func TestExitCodeKilledProcess(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	ptm, pts := openPty(t)
	defer ptm.Close()
	defer pts.Close()
	for _, tt := range []struct {
		name  string
		stdin *os.File
	}{{"detached", nil}, {"foreground", pts}} {
		id := testPrefix + "killed-" + tt.name
		type result struct {
			code int
			err  error
		}
		done := make(chan result, 1)
		go func() {
			p := Process{ID: id, Rootfs: rootfs, Args: sh("sleep 100")}
			if tt.stdin != nil {
				p.Stdin = tt.stdin
			}
			code, err := r.Run(context.Background(), p)
			done <- result{code, err}
		}()
		// A container's init ignores SIGKILL sent from inside: kill it from here.
		if err := syscall.Kill(containerPid(t, r, id), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case res := <-done:
			if res.code != 128+int(syscall.SIGKILL) || res.err != nil {
				t.Errorf("%s: Run = %d, %v; want 137", tt.name, res.code, res.err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: Run did not return", tt.name)
		}
	}
}

// containerPid waits until container id runs and returns its process's pid.
func containerPid(t *testing.T, r *Runner, id string) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out, err := exec.Command("runc", "--root", r.StateDir, "state", id).Output()
		var st struct {
			Status string `json:"status"`
			Pid    int    `json:"pid"`
		}
		if err == nil && json.Unmarshal(out, &st) == nil && st.Status == "running" && st.Pid > 0 {
			return st.Pid
		}
	}
	t.Fatalf("container %s did not start", id)
	return 0
}

// TestRuncKilledForeground: when a foreground runc (stdin a terminal) is
// killed, Run fails, and the container's process, reparented to strata (a
// subreaper), is killed and reaped, and the container deleted.
func TestRuncKilledForeground(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	ptm, pts := openPty(t)
	defer ptm.Close()
	defer pts.Close()
	// As after any detached run in this process.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	before := zombies(t)
	id := testPrefix + "fg-runc-killed"
	errc := make(chan error, 1)
	var out testsuite.SyncBuffer
	go func() {
		_, err := r.Run(context.Background(), Process{ID: id, Rootfs: rootfs, Stdin: pts, Stdout: &out, Stderr: &out, Args: sh("sleep 100")})
		errc <- err
	}()
	containerPid(t, r, id)
	runcPid := childRunning(t, id)
	if err := syscall.Kill(runcPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "runc: signal: killed") {
			t.Errorf("err = %v; want an error saying runc was killed (output %q)", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after runc was killed")
	}
	checkNoNewZombies(t, before)
}

// childRunning returns the pid of this process's child `runc ... run ... id`.
func childRunning(t *testing.T, id string) int {
	t.Helper()
	files, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(s)
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			args := strings.Split(string(cmdline), "\x00")
			if slices.Contains(args, "run") && slices.Contains(args, id) {
				return pid
			}
		}
	}
	t.Fatalf("no runc child running %s", id)
	return 0
}

// openPty opens a pseudo-terminal pair, or skips the test.
func openPty(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		ptm.Close()
		t.Skipf("no pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err == nil {
		pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	}
	if err != nil {
		ptm.Close()
		t.Skipf("no pty: %v", err)
	}
	return ptm, pts
}

// TestAdopt: adopt takes only this process's unreaped children, and with a
// start time only the process that started then.
func TestAdopt(t *testing.T) {
	if p := adopt(1, 0); p != nil {
		t.Error("adopted pid 1, not a child")
	}
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	start := startTime(pid)
	if start == 0 {
		t.Fatal("no start time")
	}
	if p := adopt(pid, start+1); p != nil {
		t.Error("adopted a child with another start time")
	}
	p := adopt(pid, start)
	if p == nil {
		t.Fatal("did not adopt a child")
	}
	p.Release()
}

// TestKillAfterReap: a kill that comes after the process was reaped (a
// cancellation racing the end of the process) cannot reach the process that
// has reused its pid since.
func TestKillAfterReap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to set /proc/sys/kernel/ns_last_pid")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	p := adopt(pid, 0)
	if p == nil {
		t.Fatal("did not adopt a child")
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := waitProcess(ctx, p)
	if err != nil || st.ExitCode() != 0 {
		t.Fatalf("waitProcess: %v %v", st, err)
	}
	cmd.Process.Release() // reaped through p
	var reuser *exec.Cmd
	for i := 0; i < 100 && reuser == nil; i++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Skipf("cannot set ns_last_pid: %v", err)
		}
		c := exec.Command("sleep", "100")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if c.Process.Pid == pid {
			reuser = c
			break
		}
		_ = c.Process.Kill()
		_ = c.Wait()
	}
	if reuser == nil {
		t.Skipf("pid %d was not reused", pid)
	}
	defer reuser.Wait()
	defer reuser.Process.Kill()
	cancel()
	if err := p.Kill(); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill after reap: %v, want os.ErrProcessDone", err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := reuser.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the process that reused pid %d: %v", pid, err)
	}
	// Signal 0 reaches a zombie too: look whether it ended (without reaping it).
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil || info.Signo != 0 {
		t.Errorf("the process that reused pid %d ended (%v, signal %d)", pid, err, info.Signo)
	}
}

// TestCancelHungRuntime: when runc hangs and cannot kill its container, Run
// kills runc itself some seconds after the cancellation and returns, whether
// runc runs detached or in the foreground (where it shares strata's process
// group).
func TestCancelHungRuntime(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	r.Runtime = filepath.Join(t.TempDir(), "runc-hung")
	script := `#!/bin/sh
case " $* " in *" run "*) exec sleep 100;; *" kill "*) exit 1;; esac
exec ` + runc + ` "$@"
`
	if err := os.WriteFile(r.Runtime, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	rootfs := newRootfs(t)
	ptm, pts := openPty(t)
	defer ptm.Close()
	defer pts.Close()
	for _, tt := range []struct {
		name  string
		stdin *os.File
	}{{"detached", nil}, {"foreground", pts}} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		errc := make(chan error, 1)
		go func() {
			p := Process{ID: testPrefix + "hung-" + tt.name, Rootfs: rootfs, Args: sh("true")}
			if tt.stdin != nil {
				p.Stdin = tt.stdin
			}
			_, err := r.Run(ctx, p)
			errc <- err
		}()
		select {
		case err := <-errc:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: err = %v, want context.DeadlineExceeded", tt.name, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s: Run did not return after cancel", tt.name)
		}
		cancel()
	}
}
