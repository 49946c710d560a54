package userns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"github.com/moby/sys/user"
	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// Run starts the running executable again with args (argv without the
// program name) inside a new user, mount and PID namespace mapped by m,
// with this process's standard streams and environment, and waits. It
// returns the exit code of the inner strata (128+N when it was killed by
// signal N). ctx only bounds the setup: once the inner strata runs, it
// decides when to stop.
//
// Signals: the inner strata has a process group of its own, so a signal
// sent to this process's group (a shell's kill %1, a CI runner's or
// systemd's kill of the group) reaches only this process, which passes it
// on once. When this process is in the foreground of a terminal, the inner
// group takes the foreground for the run (Ctrl-C goes to it alone, and it
// may read the terminal and set its modes, as strata run -t does) and gives
// it back after.
func Run(ctx context.Context, m Mapping, args []string) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("rootless: %w", err)
	}
	defer w.Close()
	// /proc/self/exe, not a path: the same binary even if it was replaced.
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), stageEnv+"="+stageWait)
	cmd.ExtraFiles = []*os.File{r} // releaseFD
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID,
		Pdeathsig:  unix.SIGKILL,
		Setpgid:    true,
	}
	tty := foregroundTerminal()
	if tty >= 0 {
		cmd.SysProcAttr.Foreground, cmd.SysProcAttr.Ctty = true, tty
		defer takeForeground(tty)
	}
	// Signals that arrive from here on go to the inner strata.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		r.Close()
		return -1, startHint(err)
	}
	r.Close()
	if err := writeMaps(ctx, cmd.Process.Pid, m); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return -1, err
	}
	if _, err := io.WriteString(w, "ok"); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return -1, fmt.Errorf("rootless: release the namespace: %w", err)
	}
	// w stays open while the inner strata runs: it sees this process die
	// by the pipe's hang-up until its own parent-death signal is set.
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case err := <-done:
			return exitCode(cmd.ProcessState, err)
		}
	}
}

// foregroundTerminal returns which of the standard descriptors is a
// terminal whose foreground process group is this process's, or -1.
func foregroundTerminal() int {
	for fd := 0; fd <= 2; fd++ {
		if !term.IsTerminal(fd) {
			continue
		}
		if pg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err == nil && pg == unix.Getpgrp() {
			return fd
		}
	}
	return -1
}

// takeForeground makes this process's group the terminal's foreground
// again (it is a background group then: SIGTTOU is ignored meanwhile).
func takeForeground(fd int) {
	signal.Ignore(unix.SIGTTOU)
	defer signal.Reset(unix.SIGTTOU)
	unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, unix.Getpgrp())
}

// startHint explains the usual reasons a user namespace cannot be made.
func startHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EINVAL) {
		return whyNoUserNS(err)
	}
	return fmt.Errorf("rootless: start in a user namespace: %w", err)
}

func exitCode(ps *os.ProcessState, err error) (int, error) {
	if ps == nil {
		return -1, fmt.Errorf("rootless: wait: %w", err)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ps.ExitCode(), nil
}

// writeMaps runs newuidmap and newgidmap on pid.
func writeMaps(ctx context.Context, pid int, m Mapping) error {
	for _, t := range []struct {
		bin string
		ids []user.IDMap
	}{{"newuidmap", m.UIDs}, {"newgidmap", m.GIDs}} {
		args := []string{strconv.Itoa(pid)}
		for _, r := range t.ids {
			args = append(args, strconv.FormatInt(r.ID, 10), strconv.FormatInt(r.ParentID, 10), strconv.FormatInt(r.Count, 10))
		}
		out, err := exec.CommandContext(ctx, t.bin, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("rootless: %s %v: %w: %s", t.bin, args, err, out)
		}
	}
	return nil
}

// Init runs the stages of the hand-over; call it before anything else in
// the program. Outside a hand-over it does nothing and returns false. In
// stage "wait" it waits for the maps and re-executes itself (it returns
// only on failure, with the error). In stage "in" it makes the mount
// namespace private, mounts the PID namespace's /proc, clears the stage
// from the environment and returns true: the program is now root of its
// user namespace.
func Init() (inside bool, err error) {
	stage := os.Getenv(stageEnv)
	if stage == "" {
		return false, nil
	}
	if os.Getpid() != 1 || !userns.RunningInUserNS() {
		// not the process Run started (an inherited environment): ignore
		os.Unsetenv(stageEnv)
		return false, nil
	}
	switch stage {
	case stageWait:
		return false, waitAndExec()
	case stageIn:
		os.Unsetenv(stageEnv)
		if err := watchParent(); err != nil {
			return true, err
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return true, fmt.Errorf("rootless: make mounts private: %w", err)
		}
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return true, fmt.Errorf("rootless: mount /proc for the PID namespace: %w", err)
		}
		return true, nil
	}
	return false, nil
}

// watchParent makes the kernel SIGKILL this process when the outer strata
// dies. The exec that gave it its capabilities cleared the parent-death
// signal the outer set, so it is set again here, and the release pipe,
// which the outer holds open while it lives, tells whether the outer died
// before that.
func watchParent() error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("rootless: set parent-death signal: %w", err)
	}
	fds := []unix.PollFd{{Fd: releaseFD, Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, 0); err == nil && fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
		os.Exit(1) // the outer strata is gone: nobody waits for us
	}
	unix.Close(releaseFD)
	return nil
}

// waitAndExec is stage "wait": block until the outer process has written
// the maps and "ok" (or died), then exec stage "in", which keeps the
// release pipe (see watchParent).
func waitAndExec() error {
	f := os.NewFile(releaseFD, "release")
	b := make([]byte, 2)
	if _, err := io.ReadFull(f, b); err != nil {
		return fmt.Errorf("rootless: the outer strata did not map the user namespace: %w", err)
	}
	if string(b) != "ok" {
		return errors.New("rootless: the outer strata did not map the user namespace")
	}
	// os.NewFile's finalizer would close the descriptor: keep f alive
	// until the exec.
	defer runtime.KeepAlive(f)
	env := os.Environ()
	for i, kv := range env {
		if len(kv) > len(stageEnv) && kv[:len(stageEnv)+1] == stageEnv+"=" {
			env[i] = stageEnv + "=" + stageIn
		}
	}
	if err := unix.Exec("/proc/self/exe", os.Args, env); err != nil {
		return fmt.Errorf("rootless: exec /proc/self/exe: %w", err)
	}
	return nil
}
