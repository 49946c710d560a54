package builder

import (
	"context"
	"sync"

	"github.com/strata-build/strata/internal/cache"
)

// stepLocks lets one build at a time run a step of a given cache key: a
// build that misses the cache on a key another build (or stage) is running
// waits for it and then finds its record, instead of doing the same work
// twice (the platforms of a BuildIndex share their $BUILDPLATFORM stages
// so). The zero value is ready to use.
type stepLocks struct {
	mu      sync.Mutex
	running map[cache.Key]chan struct{} // closed when the key's step ends
}

// lock waits until no step of key runs, then holds key; waited reports
// whether it had to wait (the cache may now hold the step). It returns
// ctx's error when ctx ends while it waits.
func (l *stepLocks) lock(ctx context.Context, key cache.Key) (unlock func(), waited bool, err error) {
	for {
		l.mu.Lock()
		if l.running == nil {
			l.running = map[cache.Key]chan struct{}{}
		}
		ch, busy := l.running[key]
		if !busy {
			ch = make(chan struct{})
			l.running[key] = ch
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.running, key)
				l.mu.Unlock()
				close(ch)
			}, waited, nil
		}
		l.mu.Unlock()
		waited = true
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, waited, ctx.Err()
		}
	}
}
