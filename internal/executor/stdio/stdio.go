// Package stdio connects a process's standard streams to the writers and
// reader of an executor.Process, for executors that start a process which
// hands its stdio on to the command (runc run --detach, the chroot init):
// one pipe per distinct writer, each read by one goroutine, so a writer given
// for both stdout and stderr sees the output in the order it was written;
// the wait for the output is bounded, so that a writer that blocks or a
// descendant that keeps a pipe open cannot hold the caller forever.
package stdio

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// Output connects a process's stdout and stderr to their writers: one pipe
// per distinct writer (a writer given for both streams gets one pipe), each
// read by one goroutine, so every writer receives its bytes in the order
// they were written. *os.File writers are handed to the process directly.
type Output struct {
	stdout, stderr *os.File // for the child; nil: /dev/null
	writers        []*os.File
	readers        []*os.File
	copies         chan struct{}
}

// Drain bounds how long the output is read after the process ended
// (a descendant that escaped and kept the pipe open, or a writer that blocks).
const Drain = 10 * time.Second

// grace is how long copies get to end once the drain time is over and
// the pipes are closed.
const grace = time.Second

// Files returns the files the process gets as its stdout and stderr (the
// same file when one writer was given for both). nil means no writer: the
// process should get /dev/null (exec.Cmd does that for a nil io.Writer, but
// not for a nil *os.File in it, which leaves the descriptor closed).
func (o *Output) Files() (stdout, stderr *os.File) { return o.stdout, o.stderr }

// NewOutput returns the Output for writers stdout and stderr (nil discards).
// The caller hands Files to the process, calls CloseWriters once it has
// started, and Wait to collect the rest of the output.
func NewOutput(stdout, stderr io.Writer) (*Output, error) {
	o := &Output{copies: make(chan struct{}, 2)}
	var err error
	if o.stdout, err = o.pipe(stdout); err != nil {
		o.CloseWriters()
		o.Wait(Drain)
		return nil, err
	}
	if stderr != nil && sameWriter(stdout, stderr) {
		o.stderr = o.stdout
		return o, nil
	}
	if o.stderr, err = o.pipe(stderr); err != nil {
		o.CloseWriters()
		o.Wait(Drain)
		return nil, err
	}
	return o, nil
}

// pipe returns the file the child writes w's stream to.
func (o *Output) pipe(w io.Writer) (*os.File, error) {
	if w == nil {
		return nil, nil
	}
	if f, ok := w.(*os.File); ok {
		return f, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	o.readers = append(o.readers, pr)
	o.writers = append(o.writers, pw)
	go func() {
		_, _ = io.Copy(w, pr)
		o.copies <- struct{}{}
	}()
	return pw, nil
}

// CloseWriters closes strata's copies of the pipes' write ends.
func (o *Output) CloseWriters() {
	for _, w := range o.writers {
		w.Close()
	}
	o.writers = nil
}

// Wait waits until every pipe is read to its end, at most drain, and closes
// the read ends. When drain is over it closes them first, which ends the
// copies blocked reading, and waits grace more for the copies; a copy
// still blocked in its writer's Write then is abandoned: its goroutine ends
// when that Write returns, without writing more.
func (o *Output) Wait(drain time.Duration) {
	timeout := time.After(drain)
	closed := false
	for n := len(o.readers); n > 0; {
		select {
		case <-o.copies:
			n--
			continue
		case <-timeout:
		}
		if closed {
			return
		}
		o.closeReaders()
		closed = true
		timeout = time.After(grace)
	}
	o.closeReaders()
}

// closeReaders closes strata's read ends of the pipes (again: no effect).
func (o *Output) closeReaders() {
	for _, r := range o.readers {
		r.Close()
	}
}

// sameWriter reports whether a and b are the same writer (false for
// writers that cannot be compared).
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// IsTerminal reports whether r is a terminal device.
func IsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// InputFile gives the file the started process passes on to the process as its stdin: r itself
// when it is a file, else the read end of a pipe that r is copied into. close
// releases strata's copy once the process has started.
func InputFile(r io.Reader) (f *os.File, close func(), err error) {
	switch r := r.(type) {
	case nil:
		return nil, func() {}, nil
	case *os.File:
		return r, func() {}, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("input pipe: %w", err)
	}
	go func() {
		_, _ = io.Copy(pw, r)
		pw.Close()
	}()
	return pr, func() { pr.Close() }, nil
}
