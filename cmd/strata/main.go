// Command strata is a daemonless Dockerfile image builder.
package main

import (
	"context"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/strata-build/strata/internal/cli"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	var got atomic.Value // os.Signal
	go func() {
		got.Store(<-sigs)
		cancel()
		<-sigs // a second signal: stop waiting for cleanup
		os.Exit(130)
	}()
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	switch got.Load() {
	case syscall.SIGINT:
		code = 130
	case syscall.SIGTERM:
		code = 143
	}
	os.Exit(code)
}
