package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
)

// Pool hands out namespaces (New) with one kept ready, and closes the ones
// given back in the background. Each namespace a run takes is replaced at
// once, so a run waits for slirp4netns to configure one only when it
// starts before the spare is ready, or first; and it does not wait for
// slirp4netns to exit (10 to 15 ms). Every namespace is fresh: a spare has
// never been joined. Set Dir before use.
type Pool struct {
	// Dir holds the namespaces' directories; created (0700) if missing.
	Dir string

	mu     sync.Mutex
	spare  *NS
	making bool // a spare is being made
	closed bool
	work   sync.WaitGroup // spares being made, namespaces being closed
	errs   []error        // of background closes
}

// Get returns a namespace for one run; the caller gives it back with
// Release. It is the spare when one is ready, else a new one made now.
func (p *Pool) Get(ctx context.Context) (*NS, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("netns: pool closed")
	}
	n := p.spare
	p.spare = nil
	p.work.Add(1) // Close waits for this Get
	p.mu.Unlock()
	defer p.work.Done()
	if n == nil {
		var err error
		if n, err = p.newNS(ctx); err != nil {
			return nil, err
		}
	}
	p.replenish()
	return n, nil
}

// replenish starts making a spare unless one is ready or on its way.
func (p *Pool) replenish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.spare != nil || p.making {
		return
	}
	p.making = true
	p.work.Add(1)
	go func() {
		defer p.work.Done()
		// not the run's context: the spare outlives the run that asked
		n, err := p.newNS(context.Background())
		p.mu.Lock()
		defer p.mu.Unlock()
		p.making = false
		if err != nil {
			return // the next Get makes its own and says why
		}
		if p.closed {
			n.Close()
			return
		}
		p.spare = n
	}()
}

// Release closes n, a namespace Get returned: in the background while the
// pool is open (Close waits for it and returns its error), else now.
func (p *Pool) Release(n *NS) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return n.Close()
	}
	p.work.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.work.Done()
		if err := n.Close(); err != nil {
			p.mu.Lock()
			p.errs = append(p.errs, err)
			p.mu.Unlock()
		}
	}()
	return nil
}

// newNS creates a namespace in a directory of its own under p.Dir.
func (p *Pool) newNS(ctx context.Context) (*NS, error) {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	dir, err := os.MkdirTemp(p.Dir, "net-")
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	n, err := New(ctx, dir)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	n.dir = dir
	return n, nil
}

// Close closes the spare (and one being made, once it is), waits for the
// namespaces given back to be closed, and hands out no more. It returns
// the errors of those closes.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	n := p.spare
	p.spare = nil
	p.mu.Unlock()
	p.work.Wait()
	var errs []error
	if n != nil {
		errs = append(errs, n.Close())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(append(errs, p.errs...)...)
}
