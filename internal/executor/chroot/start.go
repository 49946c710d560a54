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

// start runs cfg under a new init process and waits for its status.
//
// The init gets the run's stdio (one pipe per distinct writer, see package
// stdio), the control pipe (the config, then kept open: its end tells the
// init to end the run, which happens on cancellation and when strata dies)
// and the status pipe. It is started in a process group of its own, so a
// Ctrl-C on strata's terminal reaches it only through ctx.
//
// Long: starting the init, handing over and closing the pipe ends, the
// cancellation watch and the reading of the status are one ordered
// sequence; split up, the order would be harder to check.
func (r *Runner) start(ctx context.Context, p *executor.Process, cfg *initConfig) (int, error) {
	program := r.Program
	if program == "" {
		program = "/proc/self/exe"
	}
	controlR, controlW, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	defer controlR.Close()
	var closeControl sync.Once
	endRun := func() { closeControl.Do(func() { controlW.Close() }) }
	defer endRun()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	defer statusR.Close()
	defer statusW.Close()
	stdin, closeStdin, err := stdio.InputFile(p.Stdin)
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	defer closeStdin()
	out, err := stdio.NewOutput(p.Stdout, p.Stderr)
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	defer out.Wait(stdio.Drain)
	defer out.CloseWriters()

	// A program that does not call Init runs as itself with these
	// arguments: a Go test binary then runs no test, and the missing
	// status says what is wrong.
	cmd := &exec.Cmd{Path: program, Args: []string{"strata-chroot-init", "-test.run=^$"}, Env: []string{initEnv + "=" + initVersion}}
	if stdin != nil {
		cmd.Stdin = stdin // else /dev/null
	}
	if o, e := out.Files(); o != nil || e != nil {
		// exec.Cmd opens /dev/null only for a nil io.Writer, not for
		// a nil *os.File in one.
		if o != nil {
			cmd.Stdout = o
		}
		if e != nil {
			cmd.Stderr = e
		}
	}
	cmd.ExtraFiles = []*os.File{controlR, statusW} // controlFD, statusFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	controlR.Close()
	statusW.Close()
	out.CloseWriters() // the init has its copies
	closeStdin()
	if err != nil {
		return -1, fmt.Errorf("run %s: start the init (%s): %w", p.ID, program, err)
	}
	// A failed write (the init is gone) shows as a missing status.
	handErr := json.NewEncoder(controlW).Encode(cfg)
	if handErr != nil {
		endRun()
	}

	// On cancellation, end the run: the init kills and reaps its
	// processes and reports; if it has not within initGrace, kill it.
	waited := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-waited:
			return
		case <-ctx.Done():
		}
		endRun()
		select {
		case <-waited:
		case <-time.After(initGrace):
			_ = cmd.Process.Kill()
		}
	}()
	st, readErr := readStatus(statusR)
	waitErr := cmd.Wait()
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
		return -1, fmt.Errorf("run %s: the init (%s) gave no status (%s): is it a program that calls chroot.Init when chroot.IsInit?", p.ID, program, strings.Join(why, "; "))
	}
	if st.Error != "" {
		return -1, fmt.Errorf("run %s: %s", p.ID, st.Error)
	}
	return st.Code, nil
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
