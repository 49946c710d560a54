package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Reaping. strata reaps only processes it knows it adopted: a container's
// init, identified by the pid file runc writes once it has started it, or,
// when runc was killed before that, by runc's state file (pid and start
// time). Other orphans that the subreaper adopts (a daemon that some other
// command in this process forked, or a helper of a runc killed while it
// set a container up) are not reaped: nothing tells them from os/exec's own
// children, and waiting for "any child" (wait4(-1)) would collect an exit
// status that an exec.Cmd is about to wait for (it waits by pidfd), making
// its Wait fail. Containers cannot add to them: a container's processes live
// in its own PID namespace, where orphans go to the container's init. Those
// zombies stay until strata exits and init reaps them.
//
// A process is named by its pidfd (os.Process does that), not its pid, from
// the moment strata knows it is its child: a kill sent after the process
// was reaped, when another process may have its pid, goes nowhere.

// adopt returns the process pid when it is strata's child and not yet
// reaped, so that its pid names it until strata reaps it, and, when start is
// not 0, it started at start (clock ticks after boot, as in /proc/PID/stat):
// a pid read from a record may since have been reused. Else it returns nil.
func adopt(pid int, start uint64) *os.Process {
	if pid <= 0 {
		return nil
	}
	p, err := os.FindProcess(pid) // a pidfd when the kernel has them
	if err != nil {
		return nil
	}
	// WNOWAIT: look, do not reap. ECHILD: not strata's child.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil ||
		(start != 0 && startTime(pid) != start) {
		p.Release()
		return nil
	}
	return p
}

// waitProcess waits for p, strata's child, and kills it when ctx ends
// first.
func waitProcess(ctx context.Context, p *os.Process) (*os.ProcessState, error) {
	stop := context.AfterFunc(ctx, func() { _ = p.Kill() })
	defer stop()
	return p.Wait()
}

// initRecord is a container's init process as runc's state file records it.
type initRecord struct {
	Pid   int    `json:"init_process_pid"`
	Start uint64 `json:"init_process_start"`
}

// readInit reads container id's init from runc's state file (not `runc
// state`, which gives no pid for a process that has exited: the zombie that
// must be reaped); zero when there is none.
func (r *Runner) readInit(id string) initRecord {
	var st initRecord
	data, err := os.ReadFile(filepath.Join(r.StateDir, id, "state.json"))
	if err != nil || json.Unmarshal(data, &st) != nil {
		return initRecord{}
	}
	return st
}

// reapOrphan kills and reaps container id's process when runc left it to
// strata: runc was killed after it started the process (the process is
// reparented to strata, a subreaper), and it is not reaped yet. The process
// is the one runc's state file names or, when runc removed the file, known:
// the init the cancel path killed while the container was being created
// (`runc run` then fails with "container process is already dead" and
// removes its state without reaping the init, which is strata's child).
func (r *Runner) reapOrphan(id string, known initRecord) {
	st := r.readInit(id)
	if st.Start == 0 {
		st = known
	}
	if st.Start == 0 {
		return
	}
	if p := adopt(st.Pid, st.Start); p != nil {
		_ = p.Kill()
		_, _ = p.Wait()
	}
}

// readPid reads the pid runc wrote to path, or 0.
func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// startTime returns the start time of process pid (field 22 of
// /proc/PID/stat, clock ticks after boot), or 0.
func startTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces and
	// parentheses) start with field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22-2 {
		return 0
	}
	t, _ := strconv.ParseUint(f[22-3], 10, 64)
	return t
}
