package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrUnsupported is returned (wrapped) by Delete when the registry does
// not delete manifests (Docker's distribution with deletion off, say).
var ErrUnsupported = errors.New("the registry does not support this operation")

// Tags lists the tags of the repository that ref names.
func (c *Client) Tags(ctx context.Context, ref string) ([]string, error) {
	r, err := c.resolve(ref)
	if err != nil {
		return nil, err
	}
	tags, err := remote.List(r.Context(), c.options(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", r.Context().Name(), describe(err))
	}
	return tags, nil
}

// DeleteTag removes the tag ref (repo:tag). It asks the registry to
// delete the tag (the OCI distribution spec 1.1 way); a registry that
// deletes manifests only by digest (Docker's distribution 2.x, which
// drops the manifest's tags with it) is asked to delete the manifest the
// tag points to. A registry that refuses deletion gives ErrUnsupported.
func (c *Client) DeleteTag(ctx context.Context, ref string) error {
	r, err := c.resolve(ref)
	if err != nil {
		return err
	}
	t, ok := r.(name.Tag)
	if !ok {
		return fmt.Errorf("delete %s: not a tag", ref)
	}
	if err := c.delete(ctx, t); err == nil {
		return nil
	}
	d, err := remote.Head(t, c.options(ctx)...)
	if err != nil {
		return fmt.Errorf("delete %s: %w", ref, describe(err))
	}
	return c.delete(ctx, t.Context().Digest(d.Digest.String()))
}

func (c *Client) delete(ctx context.Context, r name.Reference) error {
	if err := remote.Delete(r, c.options(ctx)...); err != nil {
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusMethodNotAllowed || te.StatusCode == http.StatusNotImplemented) {
			return fmt.Errorf("delete %s: %w", r.Name(), ErrUnsupported)
		}
		return fmt.Errorf("delete %s: %w", r.Name(), describe(err))
	}
	return nil
}

// OpenBlob opens blob d of the repository ref names, trying its mirrors
// first.
func (c *Client) OpenBlob(ctx context.Context, ref string, d v1.Hash) (io.ReadCloser, error) {
	r, err := c.resolve(ref)
	if err != nil {
		return nil, err
	}
	return firstCandidate(ctx, c, r, fmt.Sprintf("fetch %s@%s", r.Context().Name(), d), func(cand name.Reference) (io.ReadCloser, error) {
		l, err := remote.Layer(cand.Context().Digest(d.String()), c.options(ctx)...)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	})
}

// IsNotFound reports whether err says that what was asked for is not in
// the registry (no such manifest, tag or repository).
func IsNotFound(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		switch d.Code {
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
			return true
		}
	}
	return false
}
