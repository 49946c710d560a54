package progress

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// screen is a small terminal: it interprets what the tty renderer writes
// (cursor up, erase below, erase line, colours, synchronized output) on a
// screen of a fixed width, wrapping long lines as a terminal does.
type screen struct {
	width    int
	rows     [][]rune
	row, col int
}

func (s *screen) line() []rune {
	for len(s.rows) <= s.row {
		s.rows = append(s.rows, nil)
	}
	return s.rows[s.row]
}

func (s *screen) write(t *testing.T, b []byte) {
	str := string(b)
	for i := 0; i < len(str); {
		c := str[i]
		switch {
		case c == 0x1b:
			if i+1 >= len(str) || str[i+1] != '[' {
				t.Fatalf("unexpected escape at %q", str[i:])
			}
			j := i + 2
			for j < len(str) && !(str[j] >= 0x40 && str[j] <= 0x7e) {
				j++
			}
			params, final := str[i+2:j], str[j]
			switch final {
			case 'A':
				n, _ := strconv.Atoi(params)
				s.row = max(0, s.row-max(n, 1))
			case 'J':
				l := s.line()
				s.rows[s.row] = l[:min(s.col, len(l))]
				s.rows = s.rows[:s.row+1]
			case 'K':
				l := s.line()
				s.rows[s.row] = l[:min(s.col, len(l))]
			case 'm', 'h', 'l':
			default:
				t.Fatalf("unexpected sequence %q", str[i:j+1])
			}
			i = j + 1
			continue
		case c == '\r':
			s.col = 0
		case c == '\n':
			s.row++
			s.col = 0
			s.line()
		case c < 0x20:
			t.Fatalf("control character %#x written", c)
		default:
			r, n := utf8.DecodeRuneInString(str[i:])
			if s.col == s.width {
				s.row++
				s.col = 0
			}
			l := s.line()
			for len(l) <= s.col {
				l = append(l, ' ')
			}
			l[s.col] = r
			s.rows[s.row] = l
			s.col++
			i += n
			continue
		}
		i++
	}
}

// lines is what the screen shows, trailing blank lines left out.
func (s *screen) lines() []string {
	var out []string
	for _, r := range s.rows {
		out = append(out, strings.TrimRight(string(r), " "))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// TestTTYFrames drives the live view on a 40-column terminal through
// parallel steps with long names and unruly output, and checks what the
// screen shows after every frame: the finished steps once each, then
// exactly the running steps, no line wider than the screen, nothing left
// over from an earlier frame.
func TestTTYFrames(t *testing.T) {
	var out bytes.Buffer
	r := newTTY(&out)
	r.width = func() int { return 40 }
	sc := &screen{width: 40}
	now := time.Now()
	frame := func(e Event) []string {
		t.Helper()
		out.Reset()
		r.event(e)
		w := out.Bytes()
		if !bytes.HasPrefix(w, []byte("\x1b[?2026h")) || !bytes.HasSuffix(w, []byte("\x1b[?2026l")) {
			t.Errorf("frame not inside synchronized-output markers: %q", w)
		}
		sc.write(t, w)
		got := sc.lines()
		for _, l := range got {
			if utf8.RuneCountInString(l) > 40 {
				t.Errorf("line wider than the screen: %q", l)
			}
		}
		return got
	}
	want := func(got []string, prefixes ...string) {
		t.Helper()
		if len(got) != len(prefixes) {
			t.Fatalf("screen has %d lines, want %d:\n%s", len(got), len(prefixes), strings.Join(got, "\n"))
		}
		for i, p := range prefixes {
			if !strings.HasPrefix(got[i], p) {
				t.Fatalf("line %d is %q, want it to start with %q; screen:\n%s", i, got[i], p, strings.Join(got, "\n"))
			}
		}
	}

	long := "[builder 2/5] RUN go build -trimpath -ldflags=-s -o /out/server ./cmd/server"
	frame(Event{Type: EventStart, Step: 1, Name: long, Time: now})
	got := frame(Event{Type: EventStart, Step: 2, Name: "[other 1/2] RUN apk add curl", Time: now})
	want(got, " => [builder 2/5] RUN go build", " => [other 1/2] RUN apk add curl")
	r.event(Event{Type: EventLog, Step: 1, Line: "downloading 10%\rdownloading 55%\rdownloading 99%"})
	r.event(Event{Type: EventLog, Step: 1, Line: "\x1b[1;31mcolored\x1b[0m and\ttabbed, then a very long line that goes on well past the edge"})
	r.event(Event{Type: EventLog, Step: 2, Line: "Get:1 http://deb.debian.org bookworm InRelease [151 kB]"})
	got = frame(Event{Type: EventMessage, Line: "a message"})
	want(got, "a message", " => [builder", "    downloading 99%", "    colored and tabbed, then", " => [other", "    Get:1 http://deb")
	for _, l := range got {
		if strings.Contains(l, "10%") || strings.Contains(l, "[1;31m") {
			t.Errorf("overwritten or escape text on screen: %q", l)
		}
	}
	got = frame(Event{Type: EventDone, Step: 2, Duration: 1.5})
	want(got, "a message", " => [other 1/2] RUN apk add curl", " => [builder", "    downloading", "    colored")
	got = frame(Event{Type: EventDone, Step: 1, Duration: 3.2})
	// The finished long name wraps (it scrolled away for good); no live
	// line is left.
	if n := len(got); n < 4 || !strings.HasPrefix(got[2], " => [builder 2/5]") {
		t.Fatalf("screen after the last step:\n%s", strings.Join(got, "\n"))
	}
	for _, l := range got[2:] {
		if strings.HasPrefix(l, "    ") {
			t.Errorf("a running step's output is left on screen: %q", l)
		}
	}
	r.close()
}
