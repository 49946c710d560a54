package runc

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// output connects a process's stdout and stderr to their writers: one pipe
// per distinct writer (a writer given for both streams gets one pipe), each
// read by one goroutine, so every writer receives its bytes in the order
// they were written. *os.File writers are handed to the process directly.
type output struct {
	stdout, stderr *os.File // for the child; nil: /dev/null
	writers        []*os.File
	readers        []*os.File
	copies         chan struct{}
}

// outputDrain bounds how long the output is read after the process ended
// (a descendant that escaped and kept the pipe open, or a writer that blocks).
const outputDrain = 10 * time.Second

// outputGrace is how long copies get to end once the drain time is over and
// the pipes are closed.
const outputGrace = time.Second

func newOutput(stdout, stderr io.Writer) (*output, error) {
	o := &output{copies: make(chan struct{}, 2)}
	var err error
	if o.stdout, err = o.pipe(stdout); err != nil {
		o.closeWriters()
		o.wait(outputDrain)
		return nil, err
	}
	if stderr != nil && sameWriter(stdout, stderr) {
		o.stderr = o.stdout
		return o, nil
	}
	if o.stderr, err = o.pipe(stderr); err != nil {
		o.closeWriters()
		o.wait(outputDrain)
		return nil, err
	}
	return o, nil
}

// pipe returns the file the child writes w's stream to.
func (o *output) pipe(w io.Writer) (*os.File, error) {
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

// closeWriters closes strata's copies of the pipes' write ends.
func (o *output) closeWriters() {
	for _, w := range o.writers {
		w.Close()
	}
	o.writers = nil
}

// wait waits until every pipe is read to its end, at most drain, and closes
// the read ends. When drain is over it closes them first, which ends the
// copies blocked reading, and waits outputGrace more for the copies; a copy
// still blocked in its writer's Write then is abandoned: its goroutine ends
// when that Write returns, without writing more.
func (o *output) wait(drain time.Duration) {
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
		timeout = time.After(outputGrace)
	}
	o.closeReaders()
}

// closeReaders closes strata's read ends of the pipes (again: no effect).
func (o *output) closeReaders() {
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

// isTerminal reports whether r is a terminal device.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// inputFile gives the file runc passes to the process as its stdin: r itself
// when it is a file, else the read end of a pipe that r is copied into. close
// releases strata's copy once runc has started.
func inputFile(r io.Reader) (f *os.File, close func(), err error) {
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
