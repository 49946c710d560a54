package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer the race detector can watch: the printer must
// never write to it from two goroutines at once.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	writing bool
	overlap bool
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.writing {
		b.overlap = true
	}
	b.writing = true
	b.mu.Unlock()
	n, err := b.buf.Write(p)
	b.mu.Lock()
	b.writing = false
	b.mu.Unlock()
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func lines(s string) []string {
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func TestStepNumberingAndOutput(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, false)
	s1 := p.Start("[internal] load build definition from Dockerfile")
	s1.Done()
	s2 := p.Start("[builder 2/4] RUN go build")
	s3 := p.Start("[stage-1 1/2] FROM busybox")
	s3.Cached()
	fmt.Fprintf(s2, "line one\nline ")
	fmt.Fprintf(s2, "two\n")
	s2.Write([]byte("no newline"))
	s2.Fail(errors.New("exit code 2"))
	p.Logf("warning: %d unused %s", 1, "arg")

	got := lines(out.String())
	want := []*regexp.Regexp{
		regexp.MustCompile(`^#1 \[internal\] load build definition from Dockerfile$`),
		regexp.MustCompile(`^#1 DONE \d+\.\ds$`),
		regexp.MustCompile(`^#2 \[builder 2/4\] RUN go build$`),
		regexp.MustCompile(`^#3 \[stage-1 1/2\] FROM busybox$`),
		regexp.MustCompile(`^#3 CACHED$`),
		regexp.MustCompile(`^#2 \d+\.\d{3} line one$`),
		regexp.MustCompile(`^#2 \d+\.\d{3} line two$`),
		regexp.MustCompile(`^#2 \d+\.\d{3} no newline$`), // flushed by Fail
		regexp.MustCompile(`^#2 ERROR: exit code 2$`),
		regexp.MustCompile(`^warning: 1 unused arg$`),
	}
	if len(got) != len(want) {
		t.Fatalf("output:\n%s\nwant %d lines", out.String(), len(want))
	}
	for i, re := range want {
		if !re.MatchString(got[i]) {
			t.Errorf("line %d = %q, want %s", i, got[i], re)
		}
	}
}

func TestLiveOutput(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, false)
	s := p.Start("RUN x")
	out.Reset()
	n, err := s.Write([]byte("partial"))
	if n != 7 || err != nil {
		t.Errorf("Write = %d %v", n, err)
	}
	if out.Len() != 0 {
		t.Errorf("an incomplete line was printed: %q", out.String())
	}
	s.Write([]byte(" line\nnext\n\n"))
	got := lines(out.String())
	re := regexp.MustCompile(`^#1 \d+\.\d{3} (.*)$`)
	var texts []string
	for _, l := range got {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q is not prefixed with #1 and the elapsed time", l)
		}
		texts = append(texts, m[1])
	}
	if want := []string{"partial line", "next", ""}; strings.Join(texts, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", texts, want)
	}
	out.Reset()
	s.Done()
	if !regexp.MustCompile(`^#1 DONE \d+\.\ds\n$`).MatchString(out.String()) {
		t.Errorf("Done printed %q", out.String())
	}
}

func TestTail(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, false)
	s := p.Start("RUN many")
	if got := s.Tail(); len(got) != 0 {
		t.Errorf("Tail of a fresh step = %q", got)
	}
	for i := 1; i <= 25; i++ {
		fmt.Fprintf(s, "line %d\n", i)
	}
	got := s.Tail()
	if len(got) != 20 || got[0] != "line 6" || got[19] != "line 25" {
		t.Fatalf("Tail = %q, want lines 6..25", got)
	}
	// the returned slice is a copy
	got[0] = "changed"
	if s.Tail()[0] != "line 6" {
		t.Error("Tail returns the internal slice")
	}
	// a pending partial line is part of the tail (and gets printed)
	s.Write([]byte("last words"))
	got = s.Tail()
	if len(got) != 20 || got[19] != "last words" || got[0] != "line 7" {
		t.Errorf("Tail with a partial line = %q", got)
	}
	if !strings.Contains(out.String(), " last words\n") {
		t.Errorf("the partial line was not printed by Tail's flush")
	}
	// not printed twice by Done
	s.Done()
	if c := strings.Count(out.String(), "last words"); c != 1 {
		t.Errorf("partial line printed %d times", c)
	}
	// short output
	s2 := p.Start("RUN few")
	fmt.Fprint(s2, "a\nb\n")
	if got := s2.Tail(); strings.Join(got, ",") != "a,b" {
		t.Errorf("Tail = %q", got)
	}
}

func TestQuiet(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, true)
	s := p.Start("RUN x")
	fmt.Fprint(s, "hello\nworld")
	p.Logf("log %s", "line")
	s2 := p.Start("COPY")
	s2.Cached()
	s.Fail(errors.New("bad"))
	s3 := p.Start("RUN y")
	s3.Done()
	if out.Len() != 0 {
		t.Errorf("quiet printer wrote %q", out.String())
	}
	// the tail is still kept when quiet: it is what a failed RUN reports
	if got := s.Tail(); strings.Join(got, ",") != "hello,world" {
		t.Errorf("quiet Tail = %q", got)
	}
	if s3.id != 3 {
		t.Errorf("steps are still numbered when quiet: id %d", s3.id)
	}
}

func TestConcurrent(t *testing.T) {
	out := &syncBuffer{}
	p := New(out, false)
	const steps, perStep = 16, 50
	var wg sync.WaitGroup
	tails := make([][]string, steps)
	for g := 0; g < steps; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			s := p.Start(fmt.Sprintf("step-%d", g))
			for i := 0; i < perStep; i++ {
				// split writes, so lines are assembled across calls
				fmt.Fprintf(s, "g%d-", g)
				fmt.Fprintf(s, "l%d\n", i)
				if i%10 == 0 {
					p.Logf("log from %d", g)
				}
			}
			tails[g] = s.Tail()
			if g%3 == 0 {
				s.Fail(errors.New("x"))
			} else if g%3 == 1 {
				s.Cached()
			} else {
				s.Done()
			}
		}(g)
	}
	wg.Wait()
	if out.overlap {
		t.Error("two writes to the output overlapped")
	}
	// every step has a unique number, every output line is whole and
	// carries the number of the step that wrote it
	ids := map[string]string{} // "#N" → step name
	lineRE := regexp.MustCompile(`^(#\d+) \d+\.\d{3} g(\d+)-l(\d+)$`)
	count := map[string]int{}
	for _, l := range lines(out.String()) {
		if m := regexp.MustCompile(`^(#\d+) (step-\d+)$`).FindStringSubmatch(l); m != nil {
			if prev, dup := ids[m[1]]; dup {
				t.Errorf("%s used for %s and %s", m[1], prev, m[2])
			}
			ids[m[1]] = m[2]
			continue
		}
		if m := lineRE.FindStringSubmatch(l); m != nil {
			if ids[m[1]] != "step-"+m[2] {
				t.Errorf("line %q printed under %s (%s)", l, m[1], ids[m[1]])
			}
			count[m[2]]++
			continue
		}
		if regexp.MustCompile(`^(#\d+ (DONE \d+\.\ds|CACHED|ERROR: x)|log from \d+)$`).MatchString(l) {
			continue
		}
		t.Errorf("garbled line %q", l)
	}
	if len(ids) != steps {
		t.Errorf("%d step headers, want %d", len(ids), steps)
	}
	for g := 0; g < steps; g++ {
		if c := count[fmt.Sprint(g)]; c != perStep {
			t.Errorf("step %d: %d lines, want %d", g, c, perStep)
		}
		if len(tails[g]) != 20 || tails[g][19] != fmt.Sprintf("g%d-l%d", g, perStep-1) {
			t.Errorf("step %d tail = %q", g, tails[g])
		}
	}
	for i := 1; i <= steps; i++ {
		if _, ok := ids[fmt.Sprintf("#%d", i)]; !ok {
			t.Errorf("step number #%d missing: numbers are not 1..%d", i, steps)
		}
	}
}

// TestCommandFailure checks that the error that ends a command is one JSON
// event (message and Dockerfile lines in fields), and plain text otherwise.
func TestCommandFailure(t *testing.T) {
	err := errors.New("Dockerfile:2: RUN false: exit code: 1\nlast output lines:\n  oops")
	src := "Dockerfile:2\n--------------------\n   2 | >>> RUN false\n--------------------"
	var js bytes.Buffer
	NewMode(&js, JSON).Fail(err, src)
	if got := lines(js.String()); len(got) != 1 {
		t.Fatalf("json: %d lines, want one event:\n%s", len(got), js.String())
	}
	var e Event
	if err := json.Unmarshal(js.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if e.Type != EventError || e.Step != 0 || e.Error != err.Error() || e.Source != src {
		t.Errorf("json event %+v", e)
	}
	var plain bytes.Buffer
	New(&plain, false).Fail(err, src)
	if want := src + "\nERROR: " + err.Error() + "\n"; plain.String() != want {
		t.Errorf("plain:\n%s\nwant:\n%s", plain.String(), want)
	}
}

// TestExclude checks that time a step waited for another one is left out
// of its duration.
func TestExclude(t *testing.T) {
	var out bytes.Buffer
	p := NewMode(&out, JSON)
	before := time.Now()
	s := p.Start("[stage-0 2/3] WORKDIR /app")
	s.Exclude(10 * time.Second)
	s.Done()
	total := time.Since(before)
	var e Event
	if err := json.Unmarshal([]byte(lines(out.String())[1]), &e); err != nil {
		t.Fatal(err)
	}
	if e.Type != EventDone || e.Duration > (total-10*time.Second).Seconds() {
		t.Errorf("done event %+v: the excluded 10s are in the duration", e)
	}
}
