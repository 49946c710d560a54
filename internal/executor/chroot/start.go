package chroot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/stdio"
)

// initGrace is how long an init gets to kill and reap the run's processes
// after a cancellation before it is killed itself.
const initGrace = 10 * time.Second

// start runs cfg under a new init process and waits for its status. On
// cancellation the init is told to end the run (the control pipe is
// closed): it kills and reaps the run's processes and reports; if it has
// not within initGrace, it is killed.
func (r *Runner) start(ctx context.Context, p *executor.Process, cfg *initConfig) (int, error) {
	in, err := r.startInit(p)
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	defer in.release()
	// A failed write (the init is gone) shows as a missing status.
	handErr := json.NewEncoder(in.control).Encode(cfg)
	if handErr != nil {
		in.endRun()
	}
	waited := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-waited:
			return
		case <-ctx.Done():
		}
		in.endRun()
		select {
		case <-waited:
		case <-time.After(initGrace):
			_ = in.cmd.Process.Kill()
		}
	}()
	st, readErr := readStatus(in.status)
	waitErr := in.cmd.Wait()
	close(waited)
	<-watchDone

	if ctx.Err() != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, ctx.Err())
	}
	if readErr != nil {
		why := []string{readErr.Error()}
		for _, err := range []error{handErr, waitErr} {
			if err != nil {
				why = append(why, err.Error())
			}
		}
		if s := strings.TrimSpace(in.stderr.String()); s != "" {
			why = append(why, "its output: "+s)
		}
		return -1, fmt.Errorf("run %s: the init (%s) gave no status (%s): is it a program that calls chroot.Init when chroot.IsInit?",
			p.ID, in.program, strings.Join(why, "; "))
	}
	if st.NoView != "" {
		r.lostView(st.NoView)
	}
	if st.Error != "" {
		return -1, fmt.Errorf("run %s: %s", p.ID, st.Error)
	}
	return st.Code, nil
}

// initProc is a started init and strata's ends of its pipes.
type initProc struct {
	program string
	cmd     *exec.Cmd
	control *os.File // the config goes in; closing it ends the run
	status  *os.File
	stderr  *tailBuffer // the init's own output (not the run's)
	out     *stdio.Output
	once    sync.Once
}

// endRun closes the control pipe: the init ends the run.
func (in *initProc) endRun() { in.once.Do(func() { in.control.Close() }) }

// release closes strata's ends and collects the run's output (all the
// run's processes are gone once the init has ended).
func (in *initProc) release() {
	in.endRun()
	in.status.Close()
	in.out.Wait(stdio.Drain)
}

// startInit starts the init with the run's stdio (one pipe per distinct
// writer, see package stdio) as stdinFD, stdoutFD and stderrFD, and the
// control and status pipes, in a process group of its own (a Ctrl-C on
// strata's terminal reaches it only through ctx). Its own stdin and stdout
// are /dev/null and its stderr is kept apart (a Go runtime's complaints are
// not the run's output).
func (r *Runner) startInit(p *executor.Process) (_ *initProc, err error) {
	in := &initProc{program: r.Program, stderr: &tailBuffer{max: 4 << 10}}
	if in.program == "" {
		in.program = "/proc/self/exe"
	}
	var theirs []*os.File // the init's ends, closed once it has them
	defer func() {
		for _, f := range theirs {
			f.Close()
		}
		if err != nil {
			if in.control != nil {
				in.control.Close()
			}
			if in.status != nil {
				in.status.Close()
			}
		}
	}()
	controlR, controlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	in.control, theirs = controlW, append(theirs, controlR)
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	in.status, theirs = statusR, append(theirs, statusW)
	stdin, closeStdin, err := stdio.InputFile(p.Stdin)
	if err != nil {
		return nil, err
	}
	defer closeStdin()
	if in.out, err = stdio.NewOutput(p.Stdout, p.Stderr); err != nil {
		return nil, err
	}
	defer in.out.CloseWriters() // the init has its copies
	stdout, stderr := in.out.Files()
	files := []*os.File{controlR, statusW, stdin, stdout, stderr} // controlFD ... stderrFD
	for i, f := range files {
		if f == nil { // no reader or writer: /dev/null
			if f, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
				in.out.CloseWriters()
				in.out.Wait(stdio.Drain)
				return nil, err
			}
			files[i], theirs = f, append(theirs, f)
		}
	}
	// A program that does not call Init runs as itself with these
	// arguments: a Go test binary then runs no test, and the missing
	// status says what is wrong.
	in.cmd = &exec.Cmd{
		Path:        in.program,
		Args:        []string{"strata-chroot-init", "-test.run=^$"},
		Env:         []string{initEnv + "=" + initVersion},
		Stderr:      in.stderr,
		ExtraFiles:  files,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := in.cmd.Start(); err != nil {
		in.out.CloseWriters()
		in.out.Wait(stdio.Drain)
		return nil, fmt.Errorf("start the init (%s): %w", in.program, err)
	}
	return in, nil
}

// readStatus reads the init's status.
func readStatus(r io.Reader) (initStatus, error) {
	var st initStatus
	err := json.NewDecoder(r).Decode(&st)
	if errors.Is(err, io.EOF) {
		err = errors.New("no status")
	}
	return st, err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
