package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RunOpts tunes one strata invocation.
type RunOpts struct {
	Env     []string      // more environment (KEY=VALUE)
	Dir     string        // working directory (default: the work folder)
	Timeout time.Duration // default: the suite's Config.Timeout
	Stdin   io.Reader     // default: nothing (/dev/null)
	AsRoot  bool          // run as root on the host even in a rootless or in-container suite
}

// Result is one finished strata invocation.
type Result struct {
	Args           []string // strata's arguments
	Stdout, Stderr string
	Output         string // stdout and stderr interleaved as they were written
	Code           int    // exit code; -1 when killed by a signal or never started
	Elapsed        time.Duration
	TimedOut       bool  // the timeout stopped it
	Err            error // strata could not be run, or it timed out
}

// String shows the invocation and its output, for test failures.
func (r Result) String() string {
	e := ""
	if r.Err != nil {
		e = "\n  error: " + r.Err.Error()
	}
	return fmt.Sprintf("strata %s\n  exit code %d after %s%s\n  --- stdout ---\n%s\n  --- stderr ---\n%s",
		strings.Join(r.Args, " "), r.Code, r.Elapsed.Round(time.Millisecond), e, Indent(r.Stdout), Indent(r.Stderr))
}

// Indent indents s for a failure message, eliding the middle of a long one.
func Indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (empty)"
	}
	if len(s) > 6000 {
		s = s[:2000] + "\n...\n" + s[len(s)-3000:]
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// Command prepares `strata --root store args...` (store "" leaves --root
// out) with the suite's environment. When ctx ends, strata gets SIGTERM (so
// that it releases its mounts and containers), SIGKILL 30 s later.
func (s *Suite) Command(ctx context.Context, store string, o RunOpts, args ...string) *exec.Cmd {
	full := args
	if store != "" {
		full = append([]string{"--root", store}, args...)
	}
	cmd := exec.CommandContext(ctx, s.Bin, full...)
	cmd.Env = s.Environ(o.Env...)
	cmd.Dir = o.Dir
	if cmd.Dir == "" {
		cmd.Dir = s.WorkDir
	}
	cmd.Stdin = o.Stdin
	if s.User != nil && !o.AsRoot {
		s.User.apply(cmd)
	}
	if s.Container != nil && !o.AsRoot {
		s.Container.wrap(s, cmd)
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	return cmd
}

// Run runs strata in store and returns what happened, whatever it was.
func (s *Suite) Run(store string, o RunOpts, args ...string) Result {
	if o.Timeout == 0 {
		o.Timeout = s.Timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	cmd := s.Command(ctx, store, o, args...)
	out := newOutputs()
	cmd.Stdout, cmd.Stderr = out.stdout(), out.stderr()
	start := time.Now()
	err := cmd.Run()
	return finished(ctx, cmd, err, out, time.Since(start), o.Timeout)
}

// MustRun is Run that fails t unless strata exits 0.
func (s *Suite) MustRun(t testing.TB, store string, o RunOpts, args ...string) Result {
	t.Helper()
	r := s.Run(store, o, args...)
	if r.Code != 0 || r.Err != nil {
		t.Fatalf("expected success from:\n%s", r)
	}
	return r
}

// finished is the result of cmd, which ran for elapsed and ended with err
// (from Wait or Run) under ctx, a context of timeout.
func finished(ctx context.Context, cmd *exec.Cmd, err error, out *outputs, elapsed, timeout time.Duration) Result {
	r := Result{Args: cmd.Args[1:], Elapsed: elapsed, Code: -1}
	r.Stdout, r.Stderr, r.Output = out.strings()
	if cmd.ProcessState != nil {
		r.Code = cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.Err = err
	}
	if ctx.Err() == context.DeadlineExceeded {
		r.TimedOut = true
		r.Err = fmt.Errorf("timed out after %s", timeout)
	}
	return r
}

// outputs collects a process's stdout and stderr, each alone and both
// interleaved.
type outputs struct {
	mu                   sync.Mutex
	out, err, interleave bytes.Buffer
}

func newOutputs() *outputs { return &outputs{} }

type outputWriter struct {
	o   *outputs
	own *bytes.Buffer
}

func (w outputWriter) Write(p []byte) (int, error) {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	w.own.Write(p)
	return w.o.interleave.Write(p)
}

func (o *outputs) stdout() io.Writer { return outputWriter{o, &o.out} }
func (o *outputs) stderr() io.Writer { return outputWriter{o, &o.err} }

func (o *outputs) strings() (stdout, stderr, both string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.out.String(), o.err.String(), o.interleave.String()
}

// Process is a strata process running in the background.
type Process struct {
	Cmd     *exec.Cmd
	Started time.Time
	out     *outputs
	ctx     context.Context
	timeout time.Duration
	done    chan struct{}
	waitErr error
	elapsed time.Duration
}

// Start starts `strata --root store args...` in the background, with
// o.Timeout (default 3 min) as its time limit. It is killed when t ends if
// it still runs.
func (s *Suite) Start(t testing.TB, store string, o RunOpts, args ...string) *Process {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	cmd := s.Command(ctx, store, o, args...)
	p := &Process{Cmd: cmd, out: newOutputs(), ctx: ctx, timeout: o.Timeout, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out.stdout(), p.out.stderr()
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		p.elapsed = time.Since(p.Started)
		close(p.done)
		cancel()
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Stdout is what the process wrote to stdout so far.
func (p *Process) Stdout() string { out, _, _ := p.out.strings(); return out }

// Stderr is what the process wrote to stderr so far.
func (p *Process) Stderr() string { _, errs, _ := p.out.strings(); return errs }

// Wait waits for the process to exit and returns what happened.
func (p *Process) Wait() Result {
	<-p.done
	return finished(p.ctx, p.Cmd, p.waitErr, p.out, p.elapsed, p.timeout)
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// WaitErr is what Wait returned; valid once Done is closed.
func (p *Process) WaitErr() error { return p.waitErr }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output shows what the process printed so far, for test failures.
func (p *Process) Output() string {
	return fmt.Sprintf("--- stdout ---\n%s\n--- stderr ---\n%s", Indent(p.Stdout()), Indent(p.Stderr()))
}

// WaitFor polls cond until it holds (true), the process exits (false) or
// timeout passes (fatal).
func (p *Process) WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p.Exited() {
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s:\n%s", what, timeout, p.Output())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Signal sends sig and waits up to within for the exit (fatal after);
// false when the process had exited before.
func (p *Process) Signal(t testing.TB, sig syscall.Signal, within time.Duration) bool {
	t.Helper()
	if p.Exited() {
		return false
	}
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return false
	}
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("strata did not exit within %s of %s:\n%s", within, sig, p.Output())
	}
	return true
}

// SyncBuffer is a bytes.Buffer safe for a writer (a process's output) and a
// concurrent reader.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StepStatus maps each step of a build's plain progress ("[stage n/m]
// INSTRUCTION") to how it ended: DONE or CACHED.
func StepStatus(stderr string) map[string]string {
	names := map[string]string{}
	out := map[string]string{}
	for _, l := range strings.Split(stderr, "\n") {
		if m := stepStart.FindStringSubmatch(l); m != nil {
			names[m[1]] = m[2]
		} else if m := stepEnd.FindStringSubmatch(l); m != nil && names[m[1]] != "" {
			out[names[m[1]]] = m[2]
		}
	}
	return out
}

var (
	stepStart = regexp.MustCompile(`^#(\d+) (\[.*)$`)
	stepEnd   = regexp.MustCompile(`^#(\d+) (DONE|CACHED)`)
)
