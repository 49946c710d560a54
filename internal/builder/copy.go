package builder

import (
	"context"

	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/source"
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

	// record makes the copy record the checksum of every build-context
	// file it reads in the context's stat cache, computed on the same read
	// (see copyItems' speculative path); not part of the step's key.
	record bool
}

// fscopy returns the options of the copy engine.
func (o copyOptions) fscopy() fscopy.Options {
	return fscopy.Options{Owner: o.chown, Chmod: o.chmod, Exclude: o.exclude, Parents: o.parents, Unpack: o.unpack, Bound: o.bound}
}

// copyItem is one resolved source of a COPY/ADD: a path of the
// instruction's source, or of its own (a download, a git checkout, a
// heredoc).
type copyItem struct {
	source.Item
	// noUnpack keeps an archive as a file (ADD of a URL without --unpack).
	noUnpack bool
}

// copyItemsOf wraps resolved source items.
func copyItemsOf(its []source.Item) []copyItem {
	out := make([]copyItem, len(its))
	for i, it := range its {
		out[i] = copyItem{Item: it}
	}
	return out
}

// copyInto copies items into rootfs at dest (absolute, in the image; a
// trailing slash means a directory), as Docker's COPY does.
func copyInto(ctx context.Context, rootfs string, items []copyItem, dest string, o copyOptions) error {
	_, err := copyIntoSnapshot(ctx, fscopy.Target{Root: rootfs}, items, dest, o)
	return err
}

// copyIntoSnapshot is copyInto for the target to (a snapshot whose upper
// directory may be known); see fscopy.Copy for the finish it returns.
func copyIntoSnapshot(ctx context.Context, to fscopy.Target, items []copyItem, dest string, o copyOptions) (finish func() error, err error) {
	its := make([]fscopy.Item, len(items))
	for i, it := range items {
		its[i] = it.Fscopy(o.record)
		its[i].NoUnpack = it.noUnpack
	}
	return fscopy.Copy(ctx, to, its, dest, o.fscopy())
}

// copyTree copies the contents of the directory item it into the existing
// host directory dest for the callers that are not COPY or ADD:
// --output type=local and the seeding of a cache mount. It writes one file
// at a time, with directory times as they always were for these callers
// (fscopy.Options.Serial).
func copyTree(ctx context.Context, it source.Item, dest string) error {
	_, err := fscopy.Copy(ctx, fscopy.Target{Root: dest}, []fscopy.Item{it.Fscopy(false)}, "/", fscopy.Options{Serial: true})
	return err
}
