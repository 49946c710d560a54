package store

import (
	"fmt"

	"github.com/opencontainers/go-digest"
)

// Removal is what RemoveRef did.
type Removal struct {
	// Untagged are the names removed (canonical, as stored).
	Untagged []string
	// Deleted is the ID (config digest) of the image that is gone from the
	// store's index; "" when the image keeps a name.
	Deleted digest.Digest
}

// RemoveRef removes ref as docker rmi does: a name is untagged, and the
// image goes with its last name; an image given by ID (or digest) goes with
// all its names, which takes force when it has more than one. An unknown
// ref is an error wrapping ErrNoSuchImage.
func (s *Store) RemoveRef(ref string, force bool) (Removal, error) {
	im, err := s.Resolve(ref)
	if err != nil {
		return Removal{}, err
	}
	id, err := s.ImageID(im.Descriptor.Digest)
	if err != nil {
		return Removal{}, err
	}
	if c, cerr := CanonicalName(ref); cerr == nil && im.Name == c {
		if _, err := s.Untag(ref); err != nil {
			return Removal{}, err
		}
		r := Removal{Untagged: []string{c}}
		n, err := s.entriesOf(im.Descriptor.Digest, false)
		if err != nil || n > 0 {
			return r, err // it has another name (or stays untagged)
		}
		r.Deleted = id
		return r, nil
	}
	names, err := s.entriesOf(im.Descriptor.Digest, true)
	if err != nil {
		return Removal{}, err
	}
	if names > 1 && !force {
		return Removal{}, fmt.Errorf("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", id.Encoded()[:12])
	}
	removed, _, err := s.RemoveImage(im.Descriptor.Digest)
	if err != nil {
		return Removal{}, err
	}
	return Removal{Untagged: removed, Deleted: id}, nil
}

// entriesOf counts the index entries for manifest d: the named ones only,
// or all.
func (s *Store) entriesOf(d digest.Digest, namedOnly bool) (int, error) {
	all, err := s.AllImages()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range all {
		if o.Descriptor.Digest == d && (o.Name != "" || !namedOnly) {
			n++
		}
	}
	return n, nil
}
