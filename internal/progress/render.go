package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/strata-build/strata/internal/human"
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
		fmt.Fprintf(r.w, "#%d %s\n", e.Step, human.Escape(e.Name))
	case EventLog:
		fmt.Fprintf(r.w, "#%d %.3f %s\n", e.Step, e.Time.Sub(r.steps[e.Step]).Seconds(), e.Line)
	case EventDone:
		fmt.Fprintf(r.w, "#%d DONE %.1fs\n", e.Step, e.Duration)
	case EventCached:
		fmt.Fprintf(r.w, "#%d CACHED\n", e.Step)
	case EventError:
		if e.Step == 0 { // the command's error
			if e.Source != "" {
				fmt.Fprintln(r.w, e.Source)
			}
			fmt.Fprintf(r.w, "ERROR: %s\n", e.Error)
			return
		}
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
