// Package snapshot defines how a build gets the filesystems it works on:
// writable snapshots of a stage's layers for RUN, COPY and ADD, whose changes
// become the next layer, and read-only views of layers to copy from or mount.
//
// A snapshotter is given a directory (a build session's work area) and owns
// what it creates there: folders, mounts and their cleanup. Parents are layer
// directories in the store's unpacked form, bottom first, which is overlayfs'
// lower directory form: a deleted path is a character device 0/0 (whiteout),
// a directory whose lower contents are hidden carries the xattr
// trusted.overlay.opaque=y. A snapshot's diff is a directory in that same
// form, holding only what changed, ready to be written as a layer tar
// (layer.WriteDiff) and adopted by the store as the next layer's directory.
//
// Two implementations exist, passing one shared test suite
// (snapshot/testsuite): overlay (kernel overlayfs mounts; the upper directory
// is the diff) and native (plain folders, copies and a tree comparison; no
// mount at all, for where mounting is not allowed). For the same changes both
// give the same layer.
package snapshot

import "context"

// Snapshotter makes writable snapshots and read-only views of layer
// directories. It is safe for concurrent use.
type Snapshotter interface {
	// Prepare makes a writable snapshot whose content is the union of
	// parents (layer directories, bottom first; none: empty). The caller
	// must Remove it, on every path.
	Prepare(ctx context.Context, parents []string) (Snapshot, error)
	// View makes a read-only view of the union of parents (bottom first;
	// none: an empty directory). The caller must Remove it. Nothing may
	// write below its root: a view may be a parent's own directory, or hold
	// hard links to the parents' files, so a write could change a layer.
	// Implementations that mount make it read-only; others cannot.
	View(ctx context.Context, parents []string) (View, error)
}

// View is a read-only filesystem tree.
type View interface {
	// Root is the directory that shows the filesystem.
	Root() string
	// Remove releases the view (unmounts it, removes its folders). It is
	// idempotent and safe to call in any state, also after errors.
	Remove() error
}

// Snapshot is a writable filesystem on parents whose changes can be taken
// as a diff. Its life is:
//
//	Prepare → writes below Root → Seal → (writes directly below Upper) → Diff → Remove
//
// Remove may come at any point, and more than once.
type Snapshot interface {
	View
	// Upper is the directory where changes land and may, after Seal, be
	// made directly (the copy engine links layer files there): overlay's
	// upper directory, or Root itself when the snapshot is a plain folder
	// (then writes below Root are direct already, also before Seal).
	Upper() string
	// Seal ends the writes through Root (overlay: unmounts it). Once
	// sealed, Root may no longer show the filesystem; Upper may still be
	// changed. Seal is idempotent; Diff seals first when needed.
	Seal() error
	// Diff returns a directory holding the snapshot's changes against its
	// parents, in layer directory form (see the package doc), with what
	// did not really change (copies of lower files, parents made for a
	// child that went again) left out. The directory belongs to the
	// snapshot: Remove deletes it, unless the caller moved it away first
	// (store.AdoptLayerDir renames it into the store). Diff is called once.
	Diff(ctx context.Context) (string, error)
}

// Lowers turns layer directories ordered bottom first (as in an image) into
// overlay lowerdirs, top-most first (native snapshots read them in the same
// order). A directory that occurs more than once
// (two layers with identical content share one unpacked dir) is kept only at
// its top-most place: overlayfs refuses a directory twice (ELOOP), and the
// upper occurrence applies the same changes over everything below, so the
// merged view is the same.
func Lowers(dirs []string) []string {
	out := make([]string, 0, len(dirs))
	seen := make(map[string]bool, len(dirs))
	for i := len(dirs) - 1; i >= 0; i-- {
		if seen[dirs[i]] {
			continue
		}
		seen[dirs[i]] = true
		out = append(out, dirs[i])
	}
	return out
}
