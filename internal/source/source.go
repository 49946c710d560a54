// Package source is what COPY, ADD and RUN --mount read from, and what their
// cache keys are made of: the build context (its .dockerignore rules
// applied), a named context (a directory or an image), an earlier stage or
// an image.
//
// Resolve turns a from value (COPY --from, a mount's from=, a FROM) into a
// Ref: what it names, before anything is read. A Source is then the tree
// itself: the build context, a plain directory, or a read-only view of
// layers (Open, backed by a snapshot.View) that lives until Close. Its
// Match, Stat and Glob find the Items a COPY names; an Item's Walk is the one
// filtered walk (the copy engine's own, fscopy.Walk, with the .dockerignore
// rules and --exclude), and its Key, what a cache key takes of it, is made
// from that same walk: the content key of an image, else the checksum of
// exactly the files the copy reads. The copy, the cache key and the
// filtered context a RUN --mount binds (Mirror) cannot disagree about which
// files count.
//
// The package does not pull, unpack or build anything: the builder gives it
// the directories, layers and keys.
package source

import (
	"context"
	"os"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/snapshot"
)

// Source is a directory tree that COPY, ADD or RUN --mount reads: the
// build context (ignore rules apply, owners become root), a plain directory
// (owners become root) or a view of a stage's or an image's layers (owners
// are kept). A Source made by Open or Extracted holds a resource its Close
// releases; Close is idempotent and a no-op for the others.
type Source struct {
	root      string
	ignore    *buildctx.Context // non-nil for the build context
	sums      *buildctx.Sums    // the build context's stat cache (nil: hash every file)
	keepOwner bool
	name      string // for messages: "build context", "stage builder", "image busybox"
	// key identifies the content of an image source for the cache; ""
	// means the files are hashed.
	key string
	// layers, bottom first, are the directories root shows (root is one of
	// them or an overlay of them) when they are immutable: unpacked store
	// layers, or a private extraction. A regular file found in one of them
	// may be hardlinked into a new snapshot instead of copied.
	layers []string
	close  func() error // releases the view or extraction; nil: nothing to do
}

// Context is the build context bctx: its .dockerignore rules leave paths
// out of every match and walk, its files become root's, and its files'
// checksums come from the stat cache sums (nil: every file is read).
func Context(bctx *buildctx.Context, sums *buildctx.Sums) *Source {
	return &Source{root: bctx.Dir, ignore: bctx, sums: sums, name: "build context"}
}

// Dir is the plain directory root, which messages call name (a named
// context directory, a download, a git checkout, heredocs): no ignore
// rules, its files become root's and are hashed for the cache.
func Dir(root, name string) *Source {
	return &Source{root: root, name: name}
}

// Open makes a read-only view of layers (directories, bottom first) with
// snaps, for a stage or an image that messages call name; key is the
// content key of an image ("image sha256:…"), or "" when the files are to
// be hashed (a stage). Owners are kept, and the layers are the immutable
// directories the view shows. The caller must Close it.
func Open(ctx context.Context, snaps snapshot.Snapshotter, layers []string, name, key string) (*Source, error) {
	v, err := snaps.View(ctx, layers)
	if err != nil {
		return nil, err
	}
	return &Source{root: v.Root(), keepOwner: true, name: name, key: key, layers: layers, close: v.Remove}, nil
}

// Extracted is a private directory dir holding files extracted from an
// image (its only, immutable layer), which messages call name; owners are
// kept. Close removes dir.
func Extracted(dir, name, key string) *Source {
	return &Source{root: dir, keepOwner: true, name: name, key: key, layers: []string{dir}, close: func() error { return os.RemoveAll(dir) }}
}

// WithOwners is a Source on the same tree that keeps its files' owners,
// has no ignore rules and is called name in messages (the seed of a cache
// mount). It does not own the tree: closing it does nothing, s still must
// be closed.
func (s *Source) WithOwners(name string) *Source {
	return &Source{root: s.root, keepOwner: true, name: name}
}

// Close releases the view or extraction behind s. It is idempotent.
func (s *Source) Close() error {
	if s == nil || s.close == nil {
		return nil
	}
	c := s.close
	s.close = nil
	return c()
}

// Root is the directory that shows the tree.
func (s *Source) Root() string { return s.root }

// Layers are the immutable directories Root shows, bottom first (nil when
// the tree may change, as the build context).
func (s *Source) Layers() []string { return s.layers }

// Name is what messages call the source: "build context", "stage builder",
// "image busybox", "build context NAME".
func (s *Source) Name() string { return s.name }

// Key is the content key of an image source ("image sha256:…"), "" when
// the files count by their checksums.
func (s *Source) Key() string { return s.key }

// IsContext reports whether s is the build context.
func (s *Source) IsContext() bool { return s.ignore != nil }

// Fscopy returns the source for the copy engine: the build context's
// .dockerignore rules apply to it and, with record, the copy records the
// checksums of the context files it reads into the stat cache.
func (s *Source) Fscopy(record bool) *fscopy.Source {
	fs := &fscopy.Source{Root: s.root, Name: s.where(), KeepOwner: s.keepOwner, Layers: s.layers}
	if s.ignore != nil {
		fs.Ignore = s.ignore
		fs.Sums, fs.Record = s.sums, record
	}
	return fs
}

// Item is one resolved path of a Source.
type Item struct {
	Source *Source
	Rel    string // path in the source, cleaned, with a leading "/"
	Host   string // host path, symlinks of the top level followed
	Info   os.FileInfo
	Keep   string // with --parents: the path kept below the destination
}

// Fscopy returns the item for the copy engine (see Source.Fscopy).
func (it Item) Fscopy(record bool) fscopy.Item {
	return fscopy.Item{Source: it.Source.Fscopy(record), Rel: it.Rel, Host: it.Host, Info: it.Info, Keep: it.Keep}
}
