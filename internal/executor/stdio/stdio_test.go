package stdio

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/executor/testsuite"
)

// blockedWriter blocks every Write until release is closed.
type blockedWriter struct{ release chan struct{} }

func (w blockedWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// TestOutputWaitBounded: Output.Wait returns within its drain time (and the
// grace for copies to end) when a writer blocks forever, and a writer that
// works still gets all its bytes.
func TestOutputWaitBounded(t *testing.T) {
	blocked := blockedWriter{make(chan struct{})}
	defer close(blocked.release)
	var good testsuite.SyncBuffer
	o, err := NewOutput(&good, blocked)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(o.stdout, "to good")
	fmt.Fprint(o.stderr, "to blocked")
	o.CloseWriters()
	const drain = 200 * time.Millisecond
	start := time.Now()
	done := make(chan struct{})
	go func() {
		o.Wait(drain)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drain + grace + 3*time.Second):
		t.Fatal("Output.Wait did not return with a blocked writer")
	}
	if d := time.Since(start); d < drain {
		t.Errorf("Output.Wait returned after %v, before the drain time", d)
	}
	if good.String() != "to good" {
		t.Errorf("working writer got %q", good.String())
	}
}

// TestOutputFiles: one writer for both streams gets one pipe, read in the
// order written; a file is handed over as is; nil gives no file.
func TestOutputFiles(t *testing.T) {
	var both testsuite.SyncBuffer
	o, err := NewOutput(&both, &both)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := o.Files()
	if stdout == nil || stdout != stderr {
		t.Fatalf("one writer: files %v %v, want one pipe", stdout, stderr)
	}
	for i := 0; i < 3; i++ {
		fmt.Fprintf(stdout, "out %d\n", i)
		fmt.Fprintf(stderr, "err %d\n", i)
	}
	o.CloseWriters()
	o.Wait(Drain)
	if want := "out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\n"; both.String() != want {
		t.Errorf("got %q, want %q", both.String(), want)
	}

	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o, err = NewOutput(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stdout, stderr := o.Files(); stdout != f || stderr != nil {
		t.Errorf("file and nil: files %v %v", stdout, stderr)
	}
	o.CloseWriters()
	o.Wait(Drain)
}

func TestInputFile(t *testing.T) {
	f, closeIn, err := InputFile(strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	closeIn()
	if err != nil || string(b) != "hello" {
		t.Errorf("read %q %v", b, err)
	}
	if f, _, _ := InputFile(nil); f != nil {
		t.Errorf("nil reader: file %v", f)
	}
	if f, _, _ := InputFile(os.Stdin); f != os.Stdin {
		t.Errorf("a file is not handed over as is")
	}
}
