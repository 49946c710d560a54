// Package progress reports build progress. Steps and messages become
// events; a renderer shows them: plain (BuildKit's plain mode: one numbered
// vertex per step, "#3 [builder 2/4] RUN go build", output lines prefixed
// with the step number and elapsed time, then DONE, CACHED or ERROR), tty (a
// live view of every running step, redrawn in place), or json (one event per
// line, for tools). Every event can also be recorded for the build report.
package progress

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"time"
)

// Mode selects a renderer.
type Mode string

// The renderers.
const (
	Plain Mode = "plain"
	TTY   Mode = "tty"
	JSON  Mode = "json"
	Quiet Mode = "quiet"
)

// EventType is the kind of an Event.
type EventType string

// Event types.
const (
	EventStart   EventType = "start"   // a step began
	EventLog     EventType = "log"     // a line of a step's output
	EventDone    EventType = "done"    // a step ended
	EventCached  EventType = "cached"  // a step ended as a cache hit
	EventError   EventType = "error"   // a step failed
	EventMessage EventType = "message" // a line that belongs to no step
)

// Event is one progress event. It is the line format of --progress=json.
type Event struct {
	Time     time.Time `json:"time"`
	Type     EventType `json:"type"`
	Step     int       `json:"step,omitempty"`
	Stage    string    `json:"stage,omitempty"`
	Name     string    `json:"name,omitempty"`
	Line     string    `json:"line,omitempty"`
	Error    string    `json:"error,omitempty"`
	Duration float64   `json:"duration,omitempty"` // seconds, for done/cached/error
	Reason   string    `json:"reason,omitempty"`   // why a step missed the cache, when known
	Source   string    `json:"source,omitempty"`   // the Dockerfile lines around a build's error
	Emulated string    `json:"emulated,omitempty"` // the platform a step ran emulated for (QEMU), for done/error
}

// renderer shows events.
type renderer interface {
	event(e Event)
	close()
}

// Printer turns steps into events for one renderer (and an optional
// recorder); it is safe for concurrent use.
type Printer struct {
	mu       sync.Mutex
	r        renderer
	next     int
	recorded []Event
	record   bool
}

// New returns a plain printer writing to w; quiet suppresses everything.
func New(w io.Writer, quiet bool) *Printer {
	if quiet || w == nil {
		return NewMode(w, Quiet)
	}
	return NewMode(w, Plain)
}

// NewMode returns a printer with the given renderer writing to w.
func NewMode(w io.Writer, m Mode) *Printer {
	p := &Printer{}
	switch m {
	case TTY:
		t := newTTY(w)
		t.start(&p.mu)
		p.r = t
	case JSON:
		p.r = &jsonRenderer{w: w}
	case Quiet:
		p.r = nopRenderer{}
	default:
		p.r = &plainRenderer{w: w, steps: map[int]time.Time{}}
	}
	return p
}

// Record keeps every event from now on, for Events.
func (p *Printer) Record() {
	p.mu.Lock()
	p.record = true
	p.mu.Unlock()
}

// Events returns the recorded events.
func (p *Printer) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.recorded...)
}

// Close stops the renderer (the tty view draws its final state).
func (p *Printer) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.r.close()
}

func (p *Printer) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if p.record {
		p.recorded = append(p.recorded, e)
	}
	p.r.event(e)
}

// Step is one vertex of the progress output. It is an io.Writer for the
// step's output: complete lines become log events.
type Step struct {
	p        *Printer
	id       int
	stage    string
	name     string
	start    time.Time
	wait     time.Duration // time spent waiting for another step (Exclude)
	tail     *tailBuffer
	line     []byte
	cached   bool
	reason   string
	emulated string // SetEmulated
}

// Start begins a step named name ("[builder 3/4] RUN go build ...").
func (p *Printer) Start(name string) *Step { return p.StartStage("", name) }

// StartStage begins a step of a stage.
func (p *Printer) StartStage(stage, name string) *Step {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	s := &Step{p: p, id: p.next, stage: stage, name: name, start: time.Now(), tail: &tailBuffer{max: 20}}
	p.emit(Event{Time: s.start, Type: EventStart, Step: s.id, Stage: stage, Name: name})
	return s
}

// Logf emits a message line that belongs to no step.
func (p *Printer) Logf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.emit(Event{Type: EventMessage, Line: sprintf(format, a...)})
}

// Fail reports the error that ended the command, with the Dockerfile lines
// around it when known, as an error event of no step (for --progress=json,
// where every line is an event).
func (p *Printer) Fail(err error, source string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.emit(Event{Type: EventError, Error: err.Error(), Source: source})
}

// MarkCached makes Done report the step as a cache hit.
func (s *Step) MarkCached() {
	s.p.mu.Lock()
	s.cached = true
	s.p.mu.Unlock()
}

// Exclude leaves d out of the step's duration: time the step spent waiting
// for another step's work (the FROM step unpacking the base image).
func (s *Step) Exclude(d time.Duration) {
	s.p.mu.Lock()
	s.wait += d
	s.p.mu.Unlock()
}

// elapsed is the step's own time so far.
func (s *Step) elapsed() float64 { return (time.Since(s.start) - s.wait).Seconds() }

// SetEmulated records that the step runs programs of platform (e.g.
// "linux/arm64") under an emulator, for its end event.
func (s *Step) SetEmulated(platform string) {
	s.p.mu.Lock()
	s.emulated = platform
	s.p.mu.Unlock()
}

// SetReason records why the step missed the cache (for the report).
func (s *Step) SetReason(r string) {
	s.p.mu.Lock()
	s.reason = r
	s.p.mu.Unlock()
}

// Write streams process output into the step; complete lines are emitted.
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
		s.emitLine(string(s.line[:i]))
		s.line = s.line[i+1:]
	}
	return n, nil
}

func (s *Step) emitLine(line string) {
	s.tail.add(line)
	s.p.emit(Event{Type: EventLog, Step: s.id, Stage: s.stage, Line: line})
}

func (s *Step) flush() {
	if len(s.line) > 0 {
		s.emitLine(string(s.line))
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
	defer s.p.mu.Unlock()
	s.flush()
	t := EventDone
	if s.cached {
		t = EventCached
	}
	s.p.emit(Event{Type: t, Step: s.id, Stage: s.stage, Name: s.name, Duration: s.elapsed(), Reason: s.reason, Emulated: s.emulated})
}

// Cached ends the step as a cache hit.
func (s *Step) Cached() {
	s.MarkCached()
	s.Done()
}

// Fail ends the step with an error; renderers show its first line (the
// whole error, with the output tail, ends the build).
func (s *Step) Fail(err error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.flush()
	msg, _, _ := strings.Cut(err.Error(), "\n")
	s.p.emit(Event{Type: EventError, Step: s.id, Stage: s.stage, Name: s.name, Error: msg, Duration: s.elapsed(), Emulated: s.emulated})
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

type nopRenderer struct{}

func (nopRenderer) event(Event) {}
func (nopRenderer) close()      {}
