package builder

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/strata-build/strata/internal/image"
)

// A pullGroup shares a pull among the callers that come while it runs;
// with keep (a build's memo) later callers get its result, failures
// included; without (the Builder's) they pull again.
func TestPullGroup(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		g := &pullGroup{keep: keep}
		var n atomic.Int32
		release := make(chan struct{})
		failed := errors.New("pull failed")
		pull := func() (*image.Image, error) {
			n.Add(1)
			<-release
			return nil, failed
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := g.do(context.Background(), "busybox", pull); !errors.Is(err, failed) {
					t.Errorf("keep=%v: concurrent caller got %v", keep, err)
				}
			}()
		}
		for n.Load() == 0 { // until one caller pulls; the others wait for it
			runtime.Gosched()
		}
		close(release)
		wg.Wait()
		before := n.Load()
		if _, err := g.do(context.Background(), "busybox", pull); !errors.Is(err, failed) {
			t.Errorf("keep=%v: later caller got %v", keep, err)
		}
		if got, want := n.Load()-before, map[bool]int32{false: 1, true: 0}[keep]; got != want {
			t.Errorf("keep=%v: a later caller pulled %d times, want %d", keep, got, want)
		}
		if _, err := g.do(context.Background(), "other", func() (*image.Image, error) { return nil, nil }); err != nil {
			t.Errorf("keep=%v: another reference: %v", keep, err)
		}
	}
}

// A caller waiting for another's pull stops when its context ends.
func TestPullGroupWaiterCancelled(t *testing.T) {
	t.Parallel()
	g := &pullGroup{}
	started, release := make(chan struct{}), make(chan struct{})
	go g.do(context.Background(), "busybox", func() (*image.Image, error) { close(started); <-release; return nil, nil })
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.do(ctx, "busybox", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled waiter got %v", err)
	}
	close(release)
}
