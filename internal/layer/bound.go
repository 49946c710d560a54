package layer

import (
	"fmt"
	"io"
)

// BoundError reports that the bytes being expanded, fetched or written went
// over a Counter's bound.
type BoundError struct {
	Max  int64
	Hint string // how to raise the bound, when the caller said
}

func (e *BoundError) Error() string {
	s := fmt.Sprintf("more than %d bytes", e.Max)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Counter adds up bytes against one bound: the layer byte bound that
// unpacking a layer, extracting an ADD archive, downloading an ADD URL and
// committing a layer all share.
type Counter struct {
	Max  int64  // the bound; 0: none
	Hint string // for BoundError
	n    int64
}

// Add counts n more bytes and returns a *BoundError once the total is over
// the bound (so a caller that adds a size before writing writes nothing
// over it).
func (c *Counter) Add(n int64) error {
	c.n += n
	if c.Max > 0 && (n > c.Max || c.n > c.Max) {
		return &BoundError{Max: c.Max, Hint: c.Hint}
	}
	return nil
}

// Reader returns r counting what is read through it against the bound: the
// read that crosses it fails with a *BoundError.
func (c *Counter) Reader(r io.Reader) io.Reader { return &countingReader{c: c, r: r} }

type countingReader struct {
	c *Counter
	r io.Reader
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	if berr := cr.c.Add(int64(n)); berr != nil {
		return 0, berr
	}
	return n, err
}
