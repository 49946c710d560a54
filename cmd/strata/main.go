// Command strata is a daemonless Dockerfile image builder.
package main

import (
	"context"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/cli"
	"github.com/strata-build/strata/internal/executor/chroot"
)

func main() {
	// A RUN's init in chroot isolation is this binary started again.
	if chroot.IsInit() {
		chroot.Init() // does not return
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 8)
	// SIGPIPE too: a reader of strata's output that goes away (strata build
	// | head) must stop the build like SIGTERM does, releasing its mounts and
	// containers, not kill strata on its next write.
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE)
	var got atomic.Value // os.Signal
	go func() {
		for s := range sigs {
			if s == syscall.SIGPIPE && !brokenStdio() {
				continue // another pipe or socket: its write fails with EPIPE
			}
			if got.CompareAndSwap(nil, s) {
				cancel()
				continue
			}
			if s != syscall.SIGPIPE { // a second signal: stop waiting for cleanup
				os.Exit(exitCode(got.Load(), 130))
			}
		}
	}()
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	os.Exit(exitCode(got.Load(), code))
}

// exitCode is 128 + the signal that stopped strata, as a shell reports it,
// else code.
func exitCode(sig any, code int) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return code
}

// brokenStdio reports whether strata's stdout or stderr is a pipe whose
// reader has gone (poll says POLLERR).
func brokenStdio() bool {
	fds := []unix.PollFd{{Fd: 1, Events: unix.POLLOUT}, {Fd: 2, Events: unix.POLLOUT}}
	if _, err := unix.Poll(fds, 0); err != nil {
		return false
	}
	return fds[0].Revents&unix.POLLERR != 0 || fds[1].Revents&unix.POLLERR != 0
}
