package registry

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/strata-build/strata/internal/store"
)

// ParseReference parses an image reference (NAME[:TAG] or NAME@DIGEST); its
// error says what is wrong with the reference.
func ParseReference(ref string, opts ...name.Option) (name.Reference, error) {
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, refError("reference", ref, err, opts)
	}
	if err := store.CheckName(ref); err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return r, nil
}

// ParseTag parses the name of an image to write: NAME[:TAG], no digest.
func ParseTag(ref string) (name.Tag, error) {
	if strings.Contains(ref, "@") {
		return name.Tag{}, fmt.Errorf("invalid image name %q: a name to give an image cannot have a digest (@...)", ref)
	}
	t, err := name.NewTag(ref)
	if err != nil {
		return name.Tag{}, refError("name", ref, err, nil)
	}
	if err := store.CheckName(ref); err != nil {
		return name.Tag{}, fmt.Errorf("invalid image name %q: %w", ref, err)
	}
	return t, nil
}

// refError explains why ref (an image "reference" or "name") does not parse. go-containerregistry's
// ParseReference only says "could not parse reference"; parsing ref as a
// tag or a digest names the part that is wrong.
func refError(what, ref string, err error, opts []name.Option) error {
	if ref == "" {
		return fmt.Errorf("invalid image %s: empty", what)
	}
	repo := ref
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	} else if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	if host, path, ok := strings.Cut(repo, "/"); ok && (strings.ContainsAny(host, ".:") || host == "localhost") {
		repo = path
	}
	if repo != strings.ToLower(repo) {
		return fmt.Errorf("invalid image %s %q: repository name %q must be lowercase", what, ref, repo)
	}
	var detail error
	if strings.Contains(ref, "@") {
		_, detail = name.NewDigest(ref, opts...)
	} else {
		_, detail = name.NewTag(ref, opts...)
	}
	if detail == nil {
		detail = err
	}
	return fmt.Errorf("invalid image %s %q: %w", what, ref, detail)
}
