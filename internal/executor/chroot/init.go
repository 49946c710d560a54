package chroot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/procview"
)

// initEnv, set to initVersion in its environment, makes a program started
// by Runner.start a run's init (IsInit).
const (
	initEnv     = "STRATA_CHROOT_INIT"
	initVersion = "1"
)

// The init's descriptors besides its own stdio: it reads its initConfig
// from the control pipe, whose end (EOF) then tells it to end the run (the
// run was canceled, or strata died), writes one initStatus to the status
// pipe, and gives the command stdinFD, stdoutFD and stderrFD as its stdio.
const (
	controlFD = 3 + iota
	statusFD
	stdinFD
	stdoutFD
	stderrFD
)

// initConfig is what the init runs.
type initConfig struct {
	Rootfs string   `json:"rootfs"`
	Path   string   `json:"path"` // the executable, inside Rootfs
	Args   []string `json:"args"`
	Env    []string `json:"env"`
	Dir    string   `json:"dir"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups"`
}

// initStatus is how a run ended.
type initStatus struct {
	Code     int    `json:"code"`            // the exit code, when Error is ""
	Error    string `json:"error,omitempty"` // the command could not be started, or processes were left
	Canceled bool   `json:"canceled,omitempty"`
	NoView   string `json:"noView,omitempty"` // why the command ran without the host's /proc (procview)
}

// IsInit reports whether this process was started as a run's init. A
// program that uses a Runner calls Init first thing in main when it is:
//
//	if chroot.IsInit() {
//		chroot.Init() // does not return
//	}
func IsInit() bool { return os.Getenv(initEnv) == initVersion }

// Init runs this process as a run's init and exits: it moves into the
// rootfs, starts the command as its config says, reaps every process that
// ends below it while the command runs, and when the command ends (or the
// run is canceled: the control pipe ends) kills and reaps every process
// left below it, then writes the status.
func Init() {
	os.Exit(runInit())
}

func runInit() int {
	for fd := controlFD; fd <= stderrFD; fd++ {
		unix.CloseOnExec(fd) // the command gets only its stdio
	}
	control := os.NewFile(controlFD, "control")
	status := os.NewFile(statusFD, "status")
	report := func(st initStatus) int {
		if err := json.NewEncoder(status).Encode(st); err != nil {
			return 1
		}
		return 0
	}
	var cfg initConfig
	dec := json.NewDecoder(control)
	if err := dec.Decode(&cfg); err != nil {
		return report(initStatus{Error: fmt.Sprintf("init: read the config: %v", err)})
	}
	// Orphans below the init come to it, not to strata.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return report(initStatus{Error: fmt.Sprintf("init: become a child subreaper: %v", err)})
	}
	proc, sys, noSetGroups, err := enterRootfs(&cfg)
	if err != nil {
		return report(initStatus{Error: err.Error()})
	}
	chld, stop := watch(dec, control)
	if err := chownStdio(cfg.UID); err != nil {
		return report(initStatus{Error: err.Error()})
	}
	pid, view, noView, err := startCommand(&cfg, procview.Roots{Proc: proc.fd, Sys: sys}, noSetGroups)
	if err != nil {
		return report(initStatus{Error: startError(cfg.Args[0], err)})
	}
	ws, ended := waitCommand(pid, chld, stop)
	left := killAll(proc, chld)
	if view != nil {
		view.Close()
	}
	st := initStatus{Canceled: !ended, NoView: noView}
	if ended {
		code, ok := executor.ExitCode(ws)
		if !ok {
			st.Error = fmt.Sprintf("the process ended with %v", ws)
		}
		st.Code = code
	}
	if left != nil && st.Error == "" {
		st.Error = left.Error()
	}
	return report(st)
}

// enterRootfs moves the init into the rootfs and the working directory,
// as root (as runc does: a USER may start in a directory it cannot
// search), keeping /proc open to find the run's processes from there, and
// /proc and /sys (sys, -1 if it cannot be opened) to show them to the
// command (procview). It reads first whether setgroups(2) is denied to the
// command.
func enterRootfs(cfg *initConfig) (proc *procfs, sys int, noSetGroups bool, err error) {
	noSetGroups = setgroupsDenied()
	if proc, err = openProc(); err != nil {
		return nil, -1, false, fmt.Errorf("init: %v", err)
	}
	sys, err = unix.Open("/sys", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		sys = -1
	}
	if err := unix.Chroot(cfg.Rootfs); err != nil {
		if sys >= 0 {
			unix.Close(sys)
		}
		msg := fmt.Sprintf("chroot to the rootfs: %v", err)
		if errors.Is(err, unix.EPERM) {
			msg += " (chroot isolation needs CAP_SYS_CHROOT)"
		}
		return nil, -1, false, errors.New(msg)
	}
	if err := unix.Chdir(cfg.Dir); err != nil {
		return nil, -1, false, fmt.Errorf("chdir to the working directory %s: %v", cfg.Dir, err)
	}
	return proc, sys, noSetGroups, nil
}

// watch returns a channel of SIGCHLD and one that is closed when the run
// is to end: at the end of the control pipe (after the config, read by
// dec), or on a signal sent to the init (which must not end the init and
// leave the run's processes).
func watch(dec *json.Decoder, control io.Reader) (chld <-chan os.Signal, stop <-chan struct{}) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGCHLD)
	s := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(s) }) }
	go func() {
		_, _ = io.Copy(io.Discard, io.MultiReader(dec.Buffered(), control))
		end()
	}()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-term
		end()
	}()
	return c, s
}

// startCommand starts the command in the init's root and working
// directory, with the user's credentials, in a session of its own, with
// the run's stdio and no other descriptor, under a procview.View that
// shows it the host's /proc and /sys (roots). Where the view cannot be
// set up, the command runs without it and noView says why.
func startCommand(cfg *initConfig, roots procview.Roots, noSetGroups bool) (pid int, view *procview.View, noView string, err error) {
	fork := func() (int, error) {
		return syscall.ForkExec(cfg.Path, cfg.Args, &syscall.ProcAttr{
			Env:   cfg.Env,
			Files: []uintptr{stdinFD, stdoutFD, stderrFD},
			Sys: &syscall.SysProcAttr{
				Credential: &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, Groups: cfg.Groups, NoSetGroups: noSetGroups},
				Setsid:     true,
			},
		})
	}
	pid, view, err = procview.Start(roots, procview.Cred{UID: cfg.UID, GID: cfg.GID, Groups: cfg.Groups}, fork)
	if errors.Is(err, procview.ErrUnavailable) {
		noView = err.Error()
		pid, err = fork()
	}
	return pid, view, noView, err
}

// chownStdio gives the command's stdio pipes to its user (the owner
// only, as runc does), so that it can open them again by name
// (/dev/stdout, /dev/fd/1, through procview). Files and devices passed in
// as stdio (`strata run > out.log`) are left as they are.
func chownStdio(uid uint32) error {
	for fd := stdinFD; fd <= stderrFD; fd++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("init: stat stdio: %v", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Uid == uid {
			continue // a file or terminal of strata's caller stays theirs
		}
		// EINVAL, EPERM: the user, or the pipe's owner, is not mapped in
		// strata's user namespace; the pipe stays strata's.
		err := unix.Fchown(fd, int(uid), -1)
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("init: give stdio to uid %d: %v", uid, err)
		}
	}
	return nil
}

// setgroupsDenied reports whether setgroups(2) is denied to this process:
// in a user namespace whose gid map was written without it (unshare -r),
// where the command then keeps the init's supplementary groups.
func setgroupsDenied() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err == nil && strings.TrimSpace(string(b)) == "deny"
}

// startError says why the command did not start, in runc's words where
// there are some.
func startError(argv0 string, err error) string {
	msg := fmt.Sprintf("exec: %q: %v", argv0, err)
	switch {
	case errors.Is(err, unix.EPERM):
		msg += " (chroot isolation needs CAP_SETUID and CAP_SETGID)"
	case errors.Is(err, unix.EINVAL):
		msg += " (is the user's uid or gid mapped in strata's user namespace?)"
	}
	return msg
}

// waitCommand reaps what ends below the init until the command (pid)
// ends, or stop is closed; ended is false then.
func waitCommand(pid int, chld <-chan os.Signal, stop <-chan struct{}) (ws syscall.WaitStatus, ended bool) {
	for {
		if ws, ok := reapAll(pid); ok {
			return ws, true
		}
		select {
		case <-chld:
		case <-stop:
			return 0, false
		}
	}
}
