package reliability

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// TestInterruptAtRandomSteps sends SIGINT or SIGTERM to strata build at a
// random step (and a random moment in it). strata must exit 130 or 143 and
// release everything itself before it exits: no mounts, runc containers,
// sessions, temp files or RUN processes, a clean fsck; then the build runs.
func TestInterruptAtRandomSteps(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	const steps = 6 // FROM, RUN, COPY, RUN, RUN, RUN: ENV is no step
	for i := range killIterations() {
		marker := fmt.Sprintf("RELIABILITY_SIGNAL=%d-%d-%d", os.Getpid(), time.Now().UnixNano(), i)
		ctxDir := suite.WriteFiles(t, map[string]string{
			"f": strings.Repeat("context file\n", 1000),
			"Dockerfile": "FROM busybox\n" +
				"ENV " + marker + "\n" +
				"RUN echo a > /a\n" +
				"COPY f /f\n" +
				"RUN sleep 0.5 && echo slept > /slept\n" +
				"RUN head -c 16m /dev/urandom > /big\n" +
				"RUN echo done > /done\n",
		})
		sig := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}[i%2]
		want := map[syscall.Signal]int{syscall.SIGINT: 130, syscall.SIGTERM: 143}[sig]
		step := 1 + randIntn(steps)
		s := suite.Start(t, store, runOpts{}, "build", "--progress", "plain", "-t", "sig", ctxDir)
		tag := fmt.Sprintf("[stage-0 %d/%d]", step, steps)
		if !s.WaitFor(t, "step "+tag, time.Minute, func() bool { return strings.Contains(s.Stderr(), tag) }) {
			t.Fatalf("iteration %d: the build ended before step %d:\n%s", i, step, s.Output())
		}
		d := randDuration(0, 250*time.Millisecond)
		time.Sleep(d)
		if !s.Signal(t, sig, 30*time.Second) {
			t.Logf("iteration %d: the build ended before %s at step %d + %s", i, sig, step, d)
			continue
		}
		code := s.Cmd.ProcessState.ExitCode()
		t.Logf("iteration %d: %s at step %d + %s: exit %d after %s", i, sig, step, d, code, time.Since(s.Started).Round(time.Millisecond))
		if code != want {
			if code == 0 && strings.Contains(s.Stderr(), "naming to") {
				t.Logf("iteration %d: the build had finished when the signal came", i)
			} else {
				t.Errorf("iteration %d: exit code %d after %s, want %d:\n%s", i, code, sig, want, s.Output())
			}
		}
		// Nothing may be left, before any other strata command runs.
		if left := testenv.Leftovers(store); len(left) > 0 {
			t.Errorf("iteration %d: after %s strata left %q", i, sig, left)
		}
		if tmp := tempFiles(store); len(tmp) > 0 {
			t.Errorf("iteration %d: after %s strata left temp files %q", i, sig, tmp)
		}
		if p := testenv.ProcessesWithEnv(marker); len(p) > 0 {
			t.Errorf("iteration %d: after %s the RUN's processes still run: %q", i, sig, p)
		}
		requireWholeImages(t, store)
		requireFsckClean(t, store)
		strata(t, store, "build", "-t", "sig", ctxDir)
		if got := imageFiles(t, store, "docker.io/library/sig:latest")["done"].content; got != "done\n" {
			t.Errorf("iteration %d: the build after the signal made /done = %q", i, got)
		}
		if t.Failed() {
			return
		}
		signalsHandled.Add(1)
	}
}
