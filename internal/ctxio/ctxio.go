// Package ctxio makes long reads stop when their context is done.
package ctxio

import (
	"context"
	"io"
)

// Reader returns a reader of r whose reads fail with ctx's error once ctx
// is done: an io.Copy of a large stream through it ends at the next read.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx: ctx, r: r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
