package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// TestInterruptDuringRun stops a build in the middle of a RUN with SIGINT
// (exit 130) and SIGTERM (exit 143): strata must release every mount, runc
// container, container process and session directory; the interrupted step
// must not be cached; and the store must build again afterwards.
func TestInterruptDuringRun(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	for _, c := range []struct {
		sig  syscall.Signal
		code int
	}{
		{syscall.SIGINT, 130},
		{syscall.SIGTERM, 143},
	} {
		t.Run(c.sig.String(), func(t *testing.T) {
			marker := fmt.Sprintf("E2E_INTERRUPT_MARKER=%d-%d", os.Getpid(), time.Now().UnixNano())
			ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nENV " + marker + "\nRUN sleep 60\n"})

			interruptRun(t, store, ctx, marker, c.sig, c.code)

			// The same build again: the interrupted step was not cached, it runs again.
			t.Run("NotCached", func(t *testing.T) { interruptRun(t, store, ctx, marker, c.sig, c.code) })

			// The store builds again.
			again := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo '" + marker + "' > /again\n"})
			strata(t, store, "build", "-t", "again", again)
			if r := strata(t, store, "run", "again", "cat", "/again"); strings.TrimSpace(r.Stdout) != marker {
				t.Errorf("build after %s: cat /again:\n%s", c.sig, r)
			}
		})
	}
}

// interruptRun builds ctx in store, waits until its RUN step's container runs
// (a process whose environment holds marker), sends sig and checks the exit
// code and that nothing is left behind.
func interruptRun(t *testing.T, store, ctx, marker string, sig syscall.Signal, wantCode int) {
	t.Helper()
	p := suite.Start(t, store, runOpts{Timeout: 2 * time.Minute}, "build", "--progress", "plain", ctx)

	// Wait until the RUN step runs: its progress line and the container's sleep.
	if !p.WaitFor(t, "the RUN sleep step (its progress line and its container process)", 60*time.Second, func() bool {
		return strings.Contains(p.Stderr(), "RUN sleep") && len(testenv.ProcessesWithEnv(marker)) > 0
	}) {
		t.Fatalf("strata build exited (%v) before the RUN sleep step ran (was it taken from the cache?):\n%s", p.WaitErr(), p.Output())
	}

	sent := time.Now()
	if !p.Signal(t, sig, 15*time.Second) {
		t.Fatalf("could not send %s to strata (exited: %v):\n%s", sig, p.Exited(), p.Output())
	}
	if got := p.Cmd.ProcessState.ExitCode(); got != wantCode {
		t.Errorf("exit code after %s = %d, want %d:\n%s", sig, got, wantCode, p.Output())
	}
	t.Logf("strata exited (%s) %s after %s", p.Cmd.ProcessState, time.Since(sent).Round(time.Millisecond), sig)

	if left := testenv.Leftovers(store); len(left) > 0 {
		t.Errorf("after %s, strata left behind: %q\n%s", sig, left, p.Output())
	}
	if procs := testenv.ProcessesWithEnv(marker); len(procs) > 0 {
		t.Errorf("after %s, the RUN's processes still run: %q", sig, procs)
	}
}

// TestBrokenPipeStopsBuild: `strata build | head -3` closes strata's output
// while a RUN prints. The build must stop as on SIGTERM — exit 141 (128 +
// SIGPIPE), every mount, container and process released — rather than be
// killed by SIGPIPE on its next write with its RUN left running.
func TestBrokenPipeStopsBuild(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	marker := fmt.Sprintf("E2E_PIPE_MARKER=%d-%d", os.Getpid(), time.Now().UnixNano())
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nENV " + marker + "\nRUN while true; do echo line; sleep 0.01; done\n"})
	runCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := suite.Command(runCtx, store, runOpts{}, "build", "--progress", "plain", ctx)
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	// Read until the RUN prints, then go away like head does.
	var seen strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), "line\n") {
		n, err := pr.Read(buf)
		if err != nil {
			t.Fatalf("strata's output ended before the RUN printed: %v\n%s", err, seen.String())
		}
		seen.Write(buf[:n])
	}
	pr.Close()
	werr := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 141 {
		t.Errorf("strata build with its output closed: %v (exit code %d), want exit code 141", werr, code)
	}
	if left := testenv.Leftovers(store); len(left) > 0 {
		t.Errorf("after its output closed, strata left behind: %q", left)
	}
	if procs := testenv.ProcessesWithEnv(marker); len(procs) > 0 {
		t.Errorf("after its output closed, the RUN's processes still run: %q", procs)
	}
}
