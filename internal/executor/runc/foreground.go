package runc

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"
)

// runForeground runs `runc run` in the foreground, for a process that uses
// the terminal: runc makes the pseudo-terminal (or hands on the terminal
// given as stdin) and must stay in the terminal's foreground process group
// to read it, set raw mode on it and receive its window size changes. Output
// order is the terminal's.
func (r *Runner) runForeground(ctx context.Context, runtimePath, bundle string, p *Process) (int, error) {
	logPath := filepath.Join(bundle, "runc.log")
	cmd := exec.Command(runtimePath,
		"--root", r.StateDir,
		"--log", logPath, "--log-format", "json",
		"run", "--bundle", bundle, p.ID)
	cmd.Dir = bundle
	cmd.Stdin = p.Stdin
	cmd.Stdout = p.Stdout
	cmd.Stderr = p.Stderr
	// If the output copy goroutines are still blocked after the process is gone
	// (a writer that does not return), do not hang forever.
	cmd.WaitDelay = 10 * time.Second

	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("run %s: start runc: %w", p.ID, err)
	}

	killed, waitErr := r.waitRunc(ctx, cmd, runtimePath, p.ID)
	var ee *exec.ExitError
	if waitErr != nil && !(errors.As(waitErr, &ee) && ee.Exited()) {
		// runc did not exit by itself (it was killed): the process it ran is
		// reparented to strata when strata is a subreaper (after a detached
		// run), else to an ancestor that reaps it.
		r.reapOrphan(p.ID, killed)
		r.forceDelete(runtimePath, p.ID)
		return -1, runcFailure(ctx, p.ID, logPath, waitErr)
	}
	// `runc run` deletes the container when it exits normally; anything left
	// (cancellation) is deleted here.
	r.forceDelete(runtimePath, p.ID)
	if ctx.Err() != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, ctx.Err())
	}
	// runc exits with its process's exit code (see executor.ExitCode), and non-zero
	// for its own failures too; those it logs at error level.
	code := cmd.ProcessState.ExitCode()
	if code != 0 {
		if msg := runcError(logPath); msg != "" {
			return -1, fmt.Errorf("run %s: runc: %s", p.ID, msg)
		}
	}
	return code, nil
}
