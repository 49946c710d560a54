// Package procview shows a chrooted process tree the host's /proc, /sys
// and /dev/fd where nothing can be mounted: in an unprivileged container
// (a Kubernetes pod at Pod Security Baseline, `docker run` with the default
// capabilities and seccomp profile) mount(2) is denied, so a chroot has no
// /proc, and programs that find themselves through /proc/self/exe (the go
// command, rustc, node, cmake), read /proc/cpuinfo, /proc/meminfo or
// /sys/devices/system/cpu, or open /dev/fd/N fail.
//
// It answers the path system calls of the processes started below it
// through a seccomp user-notification filter (seccomp(2),
// SECCOMP_FILTER_FLAG_NEW_LISTENER: Linux 5.9; Docker's and containerd's
// default profiles allow it). Each open, stat, access and readlink of the
// tree is sent to the supervisor, which reads the path from the caller's
// memory. A path under /proc, /sys or /dev/fd (and /dev/stdin, /dev/stdout,
// /dev/stderr) is answered from the host's: an open gets a descriptor of
// the host's file put into the caller (SECCOMP_IOCTL_NOTIF_ADDFD), a stat
// or readlink gets the host's answer written into its memory. /proc/self
// and /proc/thread-self name the caller. Every other call goes on as the
// caller made it (SECCOMP_USER_NOTIF_FLAG_CONTINUE), inside the chroot.
//
// What it is not: a sandbox. /proc is the host's (the container's): the
// tree sees every process of the container, strata's too, and
// /proc/PID/root leads out of the chroot. Installing a filter needs
// no_new_privs, so setuid and file-capability programs do not gain
// privileges below it (a root RUN needs none; `sudo` in a USER's RUN
// fails). Paths are matched as the caller wrote them: a path that reaches
// /proc through a symlink or a relative path from a directory outside it,
// a chdir into /proc, and an exec of /proc/self/exe go on inside the chroot,
// where /proc is what the rootfs has (nothing, usually). Calls of 32-bit
// and x32 programs on a 64-bit host are not seen. Answers are given with
// the credentials the tree started with, also to a process that changed
// them (su). The supervisor is one thread of the caller's process, which
// a process of the tree running as another user may signal. A tree that
// installs a seccomp listener of its own (crun, podman, LXC inside a RUN)
// gets EBUSY: one listener per process.
package procview

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnavailable is wrapped by Start's error when the filter cannot be
// installed: an architecture whose calls are not known here, a kernel
// without seccomp listeners, a seccomp profile that denies them.
var ErrUnavailable = errors.New("no seccomp listener")

// Roots are the host's directories a View answers from, opened outside
// the chroot: Proc is /proc (required), Sys is /sys (-1: none).
type Roots struct {
	Proc int
	Sys  int
}

// Cred is the credentials the tree starts with.
type Cred struct {
	UID, GID uint32
	Groups   []uint32
}

// View serves the path calls of the processes started by Start.
type View struct {
	roots     Roots
	listener  int
	stop      int // an eventfd: Close writes it
	cred      Cred
	credOK    bool // the serving thread has cred (else every call goes on)
	done      chan struct{}
	closeOnce sync.Once
	listOnce  sync.Once
}

// Start installs the filter on a thread of its own, calls start there (a
// fork and exec, e.g. syscall.ForkExec: the child and everything it starts
// inherit the filter) and returns start's pid and a View that serves the
// calls of that tree until Close. That thread is not used again (its
// goroutine ends locked to it), so the filter and no_new_privs stay with
// the child. cred is what the child runs as: the supervisor takes it to
// read and write the tree's memory (as a debugger without CAP_SYS_PTRACE
// would have to) and to open files for it; a process of the tree that
// changes its credentials (su) is still answered with cred's access.
// When the filter cannot be installed, start is not called and the error,
// which wraps ErrUnavailable, says why.
func Start(roots Roots, cred Cred, start func() (int, error)) (int, *View, error) {
	prog, err := filterProgram()
	if err != nil {
		return 0, nil, err
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: eventfd: %w", ErrUnavailable, err)
	}
	type result struct {
		pid, listener int
		err           error
	}
	ch := make(chan result, 1)
	// The caller's thread is kept from the goroutine below: were that
	// goroutine to run on the main thread, which the runtime never ends,
	// the thread would stay, parked, with the filter.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	go func() {
		// Never unlocked: the thread carries the filter and ends with
		// this goroutine.
		runtime.LockOSThread()
		listener, err := install(prog)
		if err != nil {
			ch <- result{err: err}
			return
		}
		pid, err := start()
		if err != nil {
			unix.Close(listener)
			ch <- result{err: err}
			return
		}
		ch <- result{pid: pid, listener: listener}
	}()
	r := <-ch
	if r.err != nil {
		unix.Close(stop)
		return 0, nil, r.err
	}
	v := &View{roots: roots, listener: r.listener, stop: stop, cred: cred, done: make(chan struct{})}
	go v.serve()
	return r.pid, v, nil
}

// Close stops serving and waits until it has: calls still to come fail
// with ENOSYS, so Close once the tree has ended.
func (v *View) Close() {
	v.closeOnce.Do(func() {
		_, _ = unix.Write(v.stop, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		<-v.done
		v.closeListener()
		unix.Close(v.stop)
	})
}

// closeListener closes the listener: the tree's calls fail with ENOSYS
// from then on.
func (v *View) closeListener() {
	v.listOnce.Do(func() { unix.Close(v.listener) })
}

// serve answers calls on a thread of its own that has the tree's
// credentials; where they cannot be taken, it lets every call go on.
func (v *View) serve() {
	defer close(v.done)
	// Never unlocked: the thread's credentials are changed.
	runtime.LockOSThread()
	if err := setThreadCred(v.cred); err != nil {
		fmt.Fprintf(os.Stderr, "procview: %v: the tree goes without the host's /proc\n", err)
	} else {
		v.credOK = true
	}
	// Linux 6.6: the caller is woken on this thread's CPU (best effort).
	_, _, _ = unix.Syscall(unix.SYS_IOCTL, uintptr(v.listener), unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS, unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	v.loop()
}

// setThreadCred gives the calling thread (alone: raw system calls, not
// Go's process-wide ones) the tree's credentials. Groups that cannot be
// set (in a user namespace that denies setgroups) are left.
func setThreadCred(c Cred) error {
	var list uintptr
	if len(c.Groups) > 0 {
		list = uintptr(unsafe.Pointer(&c.Groups[0]))
	}
	_, _, _ = unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(c.Groups)), list, 0)
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(c.GID), uintptr(c.GID), uintptr(c.GID)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", c.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(c.UID), uintptr(c.UID), uintptr(c.UID)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", c.UID, e)
	}
	return nil
}
