package runc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/executor/stdio"
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
	limit := stdio.Drain + 5*time.Second
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
