package runc

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// blockedWriter blocks every Write until release is closed.
type blockedWriter struct{ release chan struct{} }

func (w blockedWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// TestBlockedWriter: a writer that never returns from Write does not keep
// Run from returning once the output drain time is over.
func TestBlockedWriter(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	w := blockedWriter{make(chan struct{})}
	defer close(w.release)
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		code, err := r.Run(context.Background(), Process{ID: testPrefix + "blocked-writer", Rootfs: rootfs, Stdout: w, Stderr: w, Args: sh("echo hi; echo there >&2")})
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d", code)
		}
		errc <- err
	}()
	limit := outputDrain + 5*time.Second
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(limit):
		t.Fatalf("Run did not return within %v with a blocked writer", limit)
	}
	t.Logf("Run returned after %v", time.Since(start))
}

// TestOutputWaitBounded: output.wait returns within its drain time (and the
// grace for copies to end) when a writer blocks forever, and a writer that
// works still gets all its bytes.
func TestOutputWaitBounded(t *testing.T) {
	blocked := blockedWriter{make(chan struct{})}
	defer close(blocked.release)
	var good syncBuffer
	o, err := newOutput(&good, blocked)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(o.stdout, "to good")
	fmt.Fprint(o.stderr, "to blocked")
	o.closeWriters()
	const drain = 200 * time.Millisecond
	start := time.Now()
	done := make(chan struct{})
	go func() {
		o.wait(drain)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drain + outputGrace + 3*time.Second):
		t.Fatal("output.wait did not return with a blocked writer")
	}
	if d := time.Since(start); d < drain {
		t.Errorf("output.wait returned after %v, before the drain time", d)
	}
	if good.String() != "to good" {
		t.Errorf("working writer got %q", good.String())
	}
}
