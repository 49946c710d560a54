package chroot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// killTimeout bounds how long the init keeps killing and reaping the
// processes below it (a process in uninterruptible sleep dies only when
// the call it waits in returns).
const killTimeout = 30 * time.Second

// reapAll reaps every child of the init that has ended, and returns the
// wait status of pid when it was one of them.
func reapAll(pid int) (ws syscall.WaitStatus, found bool) {
	for {
		var st syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &st, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || wpid <= 0 {
			return ws, found
		}
		if wpid == pid {
			ws, found = st, true
		}
	}
}

// killAll kills (SIGKILL) every process below the init and reaps them,
// again and again until none is left: a process forked before its parent
// was killed is found on the next round (orphans come to the init, a
// subreaper). It returns an error naming the processes still there after
// killTimeout.
func killAll(proc *procfs, chld <-chan os.Signal) error {
	self := os.Getpid()
	deadline := time.Now().Add(killTimeout)
	for {
		reapAll(0)
		pids := proc.descendants(self)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes left running after %v: %v", killTimeout, pids)
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		select {
		case <-chld:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// procfs is /proc, opened before the init left it behind (chroot).
type procfs struct{ fd int }

func openProc() (*procfs, error) {
	fd, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /proc: %w", err)
	}
	return &procfs{fd: fd}, nil
}

// descendants returns the pids of the processes below root (its children,
// theirs, ...), zombies included, as /proc shows them.
func (p *procfs) descendants(root int) []int {
	fd, err := unix.Openat(p.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	dir := os.NewFile(uintptr(fd), "/proc")
	names, _ := dir.Readdirnames(-1)
	dir.Close()
	children := map[int][]int{}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if ppid := p.parent(pid); ppid > 0 {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := children[root]
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}

// parent returns the parent pid of pid (field 4 of /proc/PID/stat), or 0.
func (p *procfs) parent(pid int) int {
	fd, err := unix.Openat(p.fd, strconv.Itoa(pid)+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	f := os.NewFile(uintptr(fd), "stat")
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces and
	// parentheses) start with field 3, the state.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f2 := strings.Fields(string(b[i+1:]))
	if len(f2) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f2[1])
	return ppid
}
