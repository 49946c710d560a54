package progress

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/strata-build/strata/internal/human"
)

// ttyRenderer is a live view for terminals: finished steps and messages
// scroll above; below them, every running step (parallel stages side by
// side, one block each) with its elapsed time and last output lines,
// redrawn in place several times a second, so something visibly moves at
// least every second even when a step prints nothing.
//
// A frame never blanks the screen: it is one write that moves the cursor to
// the top of the live region and overwrites each line in place (erasing
// only each line's rest and, at the end, what is left below), inside the
// terminal's synchronized-output markers (DEC mode 2026; terminals without
// it ignore them). Live lines are cut to the terminal's width, so none wraps
// and the next frame goes back up exactly as many rows as it drew.
type ttyRenderer struct {
	w       io.Writer
	width   func() int // terminal columns
	mu      *sync.Mutex
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

// defaultWidth is assumed when the output's width cannot be asked (not a
// terminal, or a terminal that does not say).
const defaultWidth = 120

func newTTY(w io.Writer) *ttyRenderer {
	width := func() int { return defaultWidth }
	if f, ok := w.(*os.File); ok {
		width = func() int {
			cols, _, err := term.GetSize(int(f.Fd()))
			if err != nil || cols <= 0 {
				return defaultWidth
			}
			return cols
		}
	}
	return &ttyRenderer{w: w, width: width, running: map[int]*ttyStep{}, stop: make(chan struct{})}
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
		r.running[e.Step] = &ttyStep{id: e.Step, name: human.Escape(e.Name), start: e.Time}
		r.redraw(nil)
	case EventLog:
		if s := r.running[e.Step]; s != nil {
			s.tail = append(s.tail, e.Line)
			if len(s.tail) > ttyTail {
				s.tail = s.tail[len(s.tail)-ttyTail:]
			}
		}
	case EventError, EventDone, EventCached:
		if e.Step == 0 { // the command's error
			lines := []string{"\x1b[31mERROR: " + e.Error + "\x1b[0m"}
			if e.Source != "" {
				lines = append([]string{e.Source}, lines...)
			}
			r.redraw(lines)
			return
		}
		s := r.running[e.Step]
		delete(r.running, e.Step)
		name := human.Escape(e.Name)
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
					line += "\n    " + printable(l)
				}
			}
		}
		r.redraw([]string{line})
	case EventMessage:
		r.redraw([]string{e.Line})
	}
}

// redraw prints the lines that scroll (above the live region, once) and
// draws the running steps again, as one frame.
func (r *ttyRenderer) redraw(scroll []string) {
	width := r.width()
	var b strings.Builder
	b.WriteString("\x1b[?2026h")
	if r.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r", r.drawn)
	}
	for _, l := range scroll {
		// A scrolled line may wrap; it is above the live region for good.
		b.WriteString(strings.ReplaceAll(l, "\n", "\x1b[K\n") + "\x1b[K\n")
	}
	ids := make([]int, 0, len(r.running))
	for id := range r.running {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	r.drawn = 0
	for _, id := range ids {
		s := r.running[id]
		elapsed := fmt.Sprintf("  %.1fs", time.Since(s.start).Seconds())
		name := cut(s.name, width-1-len(" => ")-len(elapsed))
		b.WriteString(" => " + name + elapsed + "\x1b[K\n")
		r.drawn++
		for _, l := range s.tail {
			b.WriteString("\x1b[2m    " + cut(printable(l), width-1-4) + "\x1b[0m\x1b[K\n")
			r.drawn++
		}
	}
	b.WriteString("\x1b[J\x1b[?2026l")
	io.WriteString(r.w, b.String())
}

// printable makes one line of a step's output safe for the live region:
// what a carriage return overwrote is dropped (progress bars), and escape
// sequences and other control characters are removed.
func printable(s string) string {
	if i := strings.LastIndexByte(strings.TrimRight(s, "\r"), '\r'); i >= 0 {
		s = s[i+1:]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b:
			i = skipEscape(s, i)
		case c == '\t':
			b.WriteByte(' ')
		case c < 0x20 || c == 0x7f:
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 || unicode.Is(unicode.Cc, r) {
				continue
			}
			b.WriteString(s[i : i+n])
			i += n - 1
		}
	}
	return b.String()
}

// skipEscape returns the index of the last byte of the escape sequence that
// starts at s[i] (ESC): CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), or
// a two-byte escape.
func skipEscape(s string, i int) int {
	if i+1 >= len(s) {
		return i
	}
	switch s[i+1] {
	case '[':
		for j := i + 2; j < len(s); j++ {
			if s[j] >= 0x40 && s[j] <= 0x7e {
				return j
			}
		}
		return len(s) - 1
	case ']':
		for j := i + 2; j < len(s); j++ {
			if s[j] == 0x07 {
				return j
			}
			if s[j] == 0x1b && j+1 < len(s) && s[j+1] == '\\' {
				return j + 1
			}
		}
		return len(s) - 1
	}
	return i + 1
}

// cut shortens s to at most n columns (one per rune), ending in "..." when
// it had to cut.
func cut(s string, n int) string {
	if n < 4 {
		n = 4
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-3]) + "..."
}

func (r *ttyRenderer) close() {
	if !r.stopped {
		r.stopped = true
		close(r.stop)
		r.redraw(nil)
	}
}
