package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// plainRenderer writes BuildKit's plain progress: stable, line oriented, no
// escape sequences.
type plainRenderer struct {
	w     io.Writer
	steps map[int]time.Time
}

func (r *plainRenderer) event(e Event) {
	switch e.Type {
	case EventStart:
		r.steps[e.Step] = e.Time
		fmt.Fprintf(r.w, "#%d %s\n", e.Step, e.Name)
	case EventLog:
		fmt.Fprintf(r.w, "#%d %.3f %s\n", e.Step, e.Time.Sub(r.steps[e.Step]).Seconds(), e.Line)
	case EventDone:
		fmt.Fprintf(r.w, "#%d DONE %.1fs\n", e.Step, e.Duration)
	case EventCached:
		fmt.Fprintf(r.w, "#%d CACHED\n", e.Step)
	case EventError:
		fmt.Fprintf(r.w, "#%d ERROR: %s\n", e.Step, e.Error)
	case EventMessage:
		fmt.Fprintln(r.w, e.Line)
	}
}

func (r *plainRenderer) close() {}

// jsonRenderer writes one JSON event per line.
type jsonRenderer struct{ w io.Writer }

func (r *jsonRenderer) event(e Event) {
	b, _ := json.Marshal(e)
	r.w.Write(append(b, '\n'))
}

func (r *jsonRenderer) close() {}

// ttyRenderer is a live view for terminals: finished steps and messages
// scroll above; below them, every running step (parallel stages side by
// side, one block each) with its elapsed time and last output lines,
// redrawn in place several times a second, so something visibly moves at
// least every second even when a step prints nothing.
type ttyRenderer struct {
	w       io.Writer
	mu      *sync.Mutex // the Printer's; held by event(), taken by the ticker
	running map[int]*ttyStep
	drawn   int // lines of the live region on screen
	stop    chan struct{}
	stopped bool
}

type ttyStep struct {
	id    int
	name  string
	start time.Time
	tail  []string
}

const ttyTail = 3

func newTTY(w io.Writer) *ttyRenderer {
	return &ttyRenderer{w: w, running: map[int]*ttyStep{}, stop: make(chan struct{})}
}

// start runs the redraw ticker; mu is the Printer's lock.
func (r *ttyRenderer) start(mu *sync.Mutex) {
	r.mu = mu
	go func() {
		t := time.NewTicker(150 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				mu.Lock()
				if !r.stopped {
					r.redraw(nil)
				}
				mu.Unlock()
			}
		}
	}()
}

func (r *ttyRenderer) event(e Event) {
	switch e.Type {
	case EventStart:
		r.running[e.Step] = &ttyStep{id: e.Step, name: e.Name, start: e.Time}
		r.redraw(nil)
	case EventLog:
		if s := r.running[e.Step]; s != nil {
			s.tail = append(s.tail, e.Line)
			if len(s.tail) > ttyTail {
				s.tail = s.tail[len(s.tail)-ttyTail:]
			}
		}
	case EventDone, EventCached, EventError:
		s := r.running[e.Step]
		delete(r.running, e.Step)
		name := e.Name
		if s != nil {
			name = s.name
		}
		var line string
		switch e.Type {
		case EventDone:
			line = fmt.Sprintf("\x1b[34m => %s\x1b[0m  %.1fs", name, e.Duration)
		case EventCached:
			line = fmt.Sprintf("\x1b[34m => CACHED %s\x1b[0m", name)
		default:
			line = fmt.Sprintf("\x1b[31m => ERROR %s: %s\x1b[0m", name, e.Error)
			if s != nil {
				for _, l := range s.tail {
					line += "\n    " + l
				}
			}
		}
		r.redraw([]string{line})
	case EventMessage:
		r.redraw([]string{e.Line})
	}
}

// redraw clears the live region, prints the lines that scroll, and draws
// the running steps again.
func (r *ttyRenderer) redraw(scroll []string) {
	var b strings.Builder
	if r.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\x1b[J", r.drawn)
	}
	for _, l := range scroll {
		b.WriteString(l + "\n")
	}
	ids := make([]int, 0, len(r.running))
	for id := range r.running {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	r.drawn = 0
	for _, id := range ids {
		s := r.running[id]
		name := s.name
		if len(name) > 100 {
			name = name[:97] + "..."
		}
		fmt.Fprintf(&b, " => %s  %.1fs\n", name, time.Since(s.start).Seconds())
		r.drawn++
		for _, l := range s.tail {
			if len(l) > 120 {
				l = l[:117] + "..."
			}
			fmt.Fprintf(&b, "\x1b[2m    %s\x1b[0m\n", l)
			r.drawn++
		}
	}
	io.WriteString(r.w, b.String())
}

func (r *ttyRenderer) close() {
	if !r.stopped {
		r.stopped = true
		close(r.stop)
		r.redraw(nil)
	}
}
