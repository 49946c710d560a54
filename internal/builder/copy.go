package builder

import (
	"context"
	"os"

	"github.com/strata-build/strata/internal/buildctx"
	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/layer"
)

// copyOptions are the flags of one COPY/ADD.
type copyOptions struct {
	chown   *owner
	chmod   *fscopy.Chmod
	unpack  bool               // ADD: extract local archives
	parents bool               // COPY --parents: keep the source path below its pivot
	link    bool               // COPY --link: write into an empty layer, independent of the stage's files
	exclude []string           // COPY/ADD --exclude patterns
	bound   layer.ApplyOptions // ADD: what one extracted archive may hold

	// sums, when set, gets the checksum of every build-context file the
	// copy reads, computed on the same read (see copyLike's speculative
	// path); not part of the step's key.
	sums *buildctx.Sums
}

// fscopy returns the options of the copy engine.
func (o copyOptions) fscopy() fscopy.Options {
	return fscopy.Options{Owner: o.chown, Chmod: o.chmod, Exclude: o.exclude, Parents: o.parents, Unpack: o.unpack, Bound: o.bound}
}

// copyItem is one resolved source: its host path and what to call it.
type copyItem struct {
	rel  string // path in the source, cleaned, with leading "/"
	host string // host path, symlinks of the top level followed
	fi   os.FileInfo
	keep string      // with --parents: the path kept below the destination
	src  *copySource // where the item comes from when not the instruction's source (URL, git, heredoc)
	// noUnpack keeps an archive as a file (ADD of a URL without --unpack).
	noUnpack bool
}

// fscopy returns the item for the copy engine; cs is the instruction's
// source, sums where the checksums of build-context files go (nil: none).
func (it copyItem) fscopy(cs *copySource, sums *buildctx.Sums) fscopy.Item {
	if it.src != nil {
		cs = it.src
	}
	return fscopy.Item{Source: cs.fscopy(sums), Rel: it.rel, Host: it.host, Info: it.fi, Keep: it.keep, NoUnpack: it.noUnpack}
}

// fscopy returns the source for the copy engine: the .dockerignore rules of
// the build context apply to it, and sums gets the checksums of its files.
func (cs *copySource) fscopy(sums *buildctx.Sums) *fscopy.Source {
	s := &fscopy.Source{Root: cs.root, Name: cs.where(), KeepOwner: cs.keepOwner, Layers: cs.layers}
	if cs.ignore != nil {
		s.Ignore, s.Sums = cs.ignore, sums
	}
	return s
}

// copyInto copies items into rootfs at dest (absolute, in the image; a
// trailing slash means a directory), as Docker's COPY does.
func copyInto(ctx context.Context, rootfs string, items []copyItem, dest string, cs *copySource, o copyOptions) error {
	_, err := copyIntoSnapshot(ctx, rootfs, "", items, dest, cs, o)
	return err
}

// copyIntoSnapshot is copyInto for a snapshot whose upper directory is
// upper ("" when unknown); see fscopy.Copy for the finish it returns.
func copyIntoSnapshot(ctx context.Context, rootfs, upper string, items []copyItem, dest string, cs *copySource, o copyOptions) (finish func() error, err error) {
	its := make([]fscopy.Item, len(items))
	for i, it := range items {
		its[i] = it.fscopy(cs, o.sums)
	}
	return fscopy.Copy(ctx, fscopy.Target{Root: rootfs, Upper: upper}, its, dest, o.fscopy())
}

// copier makes directories and copies trees for the callers that are not
// COPY or ADD: WORKDIR, --output type=local and the seeding of a cache
// mount. Transitional: those call sites are being moved onto the snapshot
// package, and call fscopy themselves once they are.
type copier struct {
	rootfs      string
	cs          *copySource
	links       map[[2]uint64]string // unused: fscopy keeps the hardlinks of a copy
	parentOwner owner
	parentMode  os.FileMode
}

// mkdirAll creates dir (absolute, in the image) and its missing parents
// with the parent mode and owner.
func (c *copier) mkdirAll(dir string) error {
	return fscopy.MkdirAll(c.rootfs, dir, c.parentOwner, c.parentMode)
}

// copyDirContents copies the contents of the directory srcHost (srcRel in
// c.cs) into the existing directory dest, one file at a time and with
// directory times as they always were for these callers
// (fscopy.Options.Serial); under must be "" (no --exclude here), and
// parentOwner and parentMode do not apply (no parents are made).
func (c *copier) copyDirContents(ctx context.Context, srcHost, srcRel, dest, under string) error {
	fi, err := os.Lstat(srcHost)
	if err != nil {
		return err
	}
	it := fscopy.Item{Source: c.cs.fscopy(nil), Rel: srcRel, Host: srcHost, Info: fi}
	_, err = fscopy.Copy(ctx, fscopy.Target{Root: c.rootfs}, []fscopy.Item{it}, dest, fscopy.Options{Serial: true})
	return err
}
