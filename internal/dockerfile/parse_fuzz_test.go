package dockerfile_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/dockerfile"
)

// fileLevel are the errors about the whole file, which have no line.
var fileLevel = []string{
	"the Dockerfile is empty",
	"no build stage: the Dockerfile has no FROM instruction",
}

// FuzzParse: Parse must never panic or hang, and its errors must be
// *dockerfile.Error naming the file and a line within the input (every
// error but the whole-file ones has a line), with the message starting
// "FILE:LINE: ".
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "errors", "*.Dockerfile"))
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 256<<10 {
			t.Skip()
		}
		done := make(chan struct{})
		var df *dockerfile.Dockerfile
		var err error
		go func() {
			defer close(done)
			df, err = dockerfile.Parse("fuzz.Dockerfile", src)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Parse did not return within 10s on %d bytes", len(src))
		}
		if err == nil {
			if df == nil || len(df.Stages) == 0 {
				t.Fatalf("no error, but no stages: %#v", df)
			}
			for _, w := range df.Warnings() {
				if w.Line < 0 || w.Line > lineCount(src)+1 {
					t.Errorf("warning %q at line %d of a %d-line input", w.Message, w.Line, lineCount(src))
				}
			}
			return
		}
		if df != nil {
			t.Errorf("Parse returned a Dockerfile with the error %v", err)
		}
		var de *dockerfile.Error
		if !errors.As(err, &de) {
			t.Fatalf("error %T %q is not a *dockerfile.Error", err, err)
		}
		if de.File != "fuzz.Dockerfile" {
			t.Errorf("error names file %q", de.File)
		}
		msg := err.Error()
		if de.Line == 0 {
			whole := false
			for _, s := range fileLevel {
				whole = whole || strings.HasSuffix(msg, s)
			}
			if !whole {
				t.Errorf("an error without a line for an input with %d lines: %q", lineCount(src), msg)
			}
			return
		}
		if de.Line < 0 || de.Line > lineCount(src) {
			t.Errorf("error at line %d of a %d-line input: %q", de.Line, lineCount(src), msg)
		}
		if want := fmt.Sprintf("fuzz.Dockerfile:%d: ", de.Line); !strings.HasPrefix(msg, want) {
			t.Errorf("message %q does not start with %q", msg, want)
		}
	})
}

// lineCount is the number of lines of src as the parser counts them
// (\n, \r\n and lone \r end a line).
func lineCount(src []byte) int {
	s := strings.ReplaceAll(string(src), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Count(s, "\n") + 1
}
