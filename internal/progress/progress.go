// Package progress prints build progress the way BuildKit's plain mode does:
// one numbered vertex per step ("#3 [builder 2/4] RUN go build"), its output
// lines prefixed with the vertex number and elapsed time, then DONE, CACHED or
// ERROR with the duration.
package progress

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Printer writes progress to one writer; it is safe for concurrent use.
type Printer struct {
	mu    sync.Mutex
	w     io.Writer
	quiet bool
	next  int
}

// New returns a printer writing to w; quiet suppresses everything.
func New(w io.Writer, quiet bool) *Printer {
	return &Printer{w: w, quiet: quiet}
}

// Step is one vertex of the progress output.
type Step struct {
	p     *Printer
	id    int
	name  string
	start time.Time
	tail  *tailBuffer
	line  []byte
	// cached makes Done print CACHED: the step's result came from the cache.
	cached bool
}

// MarkCached makes Done report the step as a cache hit.
func (s *Step) MarkCached() {
	s.p.mu.Lock()
	s.cached = true
	s.p.mu.Unlock()
}

// Start begins a step named name ("[builder 3/4] RUN go build ...").
func (p *Printer) Start(name string) *Step {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	s := &Step{p: p, id: p.next, name: name, start: time.Now(), tail: &tailBuffer{max: 20}}
	p.printf("#%d %s\n", s.id, name)
	return s
}

// Logf prints a message line that belongs to no step.
func (p *Printer) Logf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.printf(format+"\n", a...)
}

func (p *Printer) printf(format string, a ...any) {
	if p.quiet {
		return
	}
	fmt.Fprintf(p.w, format, a...)
}

// Write streams process output into the step; complete lines are printed
// live, prefixed with the step number and elapsed seconds.
func (s *Step) Write(b []byte) (int, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	n := len(b)
	s.line = append(s.line, b...)
	for {
		i := bytes.IndexByte(s.line, '\n')
		if i < 0 {
			break
		}
		s.emit(s.line[:i])
		s.line = s.line[i+1:]
	}
	return n, nil
}

func (s *Step) emit(line []byte) {
	s.tail.add(string(line))
	s.p.printf("#%d %.3f %s\n", s.id, time.Since(s.start).Seconds(), line)
}

func (s *Step) flush() {
	if len(s.line) > 0 {
		s.emit(s.line)
		s.line = nil
	}
}

// Tail returns the last output lines of the step (at most 20).
func (s *Step) Tail() []string {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.flush()
	return append([]string(nil), s.tail.lines...)
}

// Done ends the step successfully (CACHED when MarkCached was called).
func (s *Step) Done() {
	s.p.mu.Lock()
	cached := s.cached
	s.p.mu.Unlock()
	if cached {
		s.Cached()
		return
	}
	s.end("DONE")
}

// Cached ends the step as a cache hit.
func (s *Step) Cached() {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.printf("#%d CACHED\n", s.id)
}

// Fail ends the step with an error.
func (s *Step) Fail(err error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.flush()
	// the first line only: the full error (with the output tail) ends the build
	msg, _, _ := strings.Cut(err.Error(), "\n")
	s.p.printf("#%d ERROR: %s\n", s.id, msg)
}

func (s *Step) end(word string) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.flush()
	s.p.printf("#%d %s %.1fs\n", s.id, word, time.Since(s.start).Seconds())
}

type tailBuffer struct {
	max   int
	lines []string
}

func (t *tailBuffer) add(l string) {
	t.lines = append(t.lines, l)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}
