package layer

import (
	"archive/tar"
	"io"
)

// copyTar copies the tar stream r to w byte for byte, telling w where each
// entry starts (Boundary) and where the last one ends (End) as archive/tar
// reads the headers: a tarball that is compressed as it is (strata import,
// strata load) is cut at entries and gets an index, like a committed
// layer. A stream that stops reading as a tar is copied on all the same,
// and gets no End, so no index.
func copyTar(r io.Reader, w entryWriter) error {
	t := &tarTee{r: r, w: w, holding: true} // the first entry starts at 0
	tr := tar.NewReader(t)
	buf := make([]byte, 256<<10)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			w.End()
			break
		}
		if err != nil {
			break // not a tar (any more): the rest is copied as it is
		}
		// the entry's headers are held: it starts at t.hold
		w.Boundary(hdr)
		if err := t.release(); err != nil {
			return err
		}
		// its content (a sparse file's data as stored), written through
		if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{tr}, buf); err != nil {
			break
		}
		// The next entry starts after the padding to the next block:
		// what Next reads from there is held until its header is known.
		t.hold = (t.n + tarBlockSize - 1) / tarBlockSize * tarBlockSize
		t.holding = true
	}
	if err := t.release(); err != nil {
		return err
	}
	if t.rerr != nil {
		return t.rerr
	}
	_, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, buf)
	return err
}

// tarTee is the reader archive/tar reads r through: what it reads goes on
// to w, except the bytes from hold on while holding, which wait in held
// for release (the caller first tells w that an entry starts there).
type tarTee struct {
	r       io.Reader
	w       entryWriter
	n       int64 // bytes read from r
	hold    int64
	holding bool
	held    []byte
	err     error // w's
	rerr    error // r's, but io.EOF
}

func (t *tarTee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.rerr = err
	}
	b := p[:n]
	if t.holding {
		if k := t.hold - t.n; k > 0 {
			k = min(k, int64(len(b)))
			if werr := t.write(b[:k]); werr != nil {
				return 0, werr
			}
			t.n += k
			b = b[k:]
		}
		t.held = append(t.held, b...)
	} else if werr := t.write(b); werr != nil {
		return 0, werr
	}
	t.n += int64(len(b))
	return n, err
}

func (t *tarTee) write(b []byte) error {
	if len(b) == 0 || t.err != nil {
		return t.err
	}
	_, t.err = t.w.Write(b)
	return t.err
}

// release writes what is held and stops holding.
func (t *tarTee) release() error {
	err := t.write(t.held)
	t.held, t.holding = t.held[:0], false
	return err
}
