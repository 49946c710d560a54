package image

import (
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/store"
)

// OpenVerified opens the stored blob d of size bytes for export or push: it
// hashes what is read and fails the read that reaches the end (size bytes,
// or the file's end) when the content is not d, naming the blob and `strata
// fsck --repair`, so a blob damaged on disk is never sent out.
func OpenVerified(s *store.Store, d digest.Digest, size int64) (io.ReadCloser, error) {
	f, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	return &verifier{f: f, d: d, size: size, h: d.Algorithm().Hash()}, nil
}

type verifier struct {
	f    io.ReadCloser
	d    digest.Digest
	size int64
	h    hash.Hash
	n    int64
	err  error // the verdict, once reached
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	switch {
	case v.n > v.size:
		v.err = v.damaged(fmt.Sprintf("it is longer than its %d bytes", v.size))
	case v.n == v.size:
		if got := digest.NewDigest(v.d.Algorithm(), v.h); got != v.d {
			v.err = v.damaged("its content hashes to " + got.String())
		} else if err == nil {
			return n, nil
		} else {
			v.err = err
		}
	case errors.Is(err, io.EOF):
		v.err = v.damaged(fmt.Sprintf("it has %d of its %d bytes", v.n, v.size))
	case err != nil:
		return n, fmt.Errorf("blob %s: %w", v.d, err)
	}
	if v.err == io.EOF {
		return n, io.EOF
	}
	return n, v.err
}

func (v *verifier) damaged(why string) error {
	return fmt.Errorf("blob %s in the store is damaged (%s); run `strata fsck --repair`", v.d, why)
}

func (v *verifier) Close() error { return v.f.Close() }
