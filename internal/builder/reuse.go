package builder

import (
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// A step that misses the cache often makes almost the layer its previous
// build made (the step at the same place of the same Dockerfile): a COPY of
// a context where one file changed. Two kinds of work are taken from that
// previous layer instead of done again, neither of which changes the layer
// made: the files a COPY would write unchanged are hardlinked from the
// previous layer's directory (fscopy.Previous), and the compressed members
// of the blob that hold unchanged bytes are copied from the previous blob
// (layer.ReuseBlob). What makes this possible is kept in store sidecars:
// the content checksums of a COPY layer's files, and a blob's member index.

// stepReuse is what the step being built may take from its previous build,
// and what it records for the next one.
type stepReuse struct {
	prev    *cache.Record                       // the previous build's record, if known
	files   *fscopy.FileSums                    // the checksums the step's copy collects
	records chan map[string]fscopy.PreviousFile // see collectFiles
}

// beginReuse looks up the previous build of the step at pos.
func (sb *stageBuilder) beginReuse(pos string) {
	sb.reuse = stepReuse{}
	if rec, ok := sb.cache.previous(pos); ok && rec.Layer != nil {
		sb.reuse.prev = rec
	}
}

// copyTarget is the target of a COPY into the snapshot rootfs (upper: its
// upper directory): it links unchanged files from the previous build's
// layer and collects the checksums of the files it writes.
func (sb *stageBuilder) copyTarget(rootfs, upper string) fscopy.Target {
	to := fscopy.Target{Root: rootfs, Upper: upper, Sums: &fscopy.FileSums{}}
	sb.reuse.files = to.Sums
	if prev := sb.reuse.prev; prev != nil {
		id := prev.Layer.DiffID
		var files map[string]fscopy.PreviousFile
		if sb.svc.store.HasLayer(id) && sb.svc.store.Sidecar(store.SidecarFiles, id, &files) {
			to.Previous = &fscopy.Previous{Dir: sb.svc.store.LayerDir(id), Files: files}
		}
	}
	return to
}

// collectFiles starts collecting, beside the commit of the step's finished
// upper directory, the records of the files its copy wrote (their inode
// numbers are one lstat each); endReuse writes them.
func (sb *stageBuilder) collectFiles(upper string) {
	files := sb.reuse.files
	if files == nil {
		return
	}
	ch := make(chan map[string]fscopy.PreviousFile, 1)
	sb.reuse.records = ch
	go func() { ch <- files.Files(upper) }()
}

// endReuse records, for the layer diffID the step made ("": none), what
// collectFiles collected.
func (sb *stageBuilder) endReuse(diffID digest.Digest) {
	ch := sb.reuse.records
	sb.reuse = stepReuse{}
	if ch == nil {
		return
	}
	if m := <-ch; len(m) > 0 && diffID != "" {
		if err := sb.svc.store.PutSidecar(store.SidecarFiles, diffID, m); err != nil {
			sb.svc.progress.Logf("warning: %v", err)
		}
	}
}

// commitReuse is what a commit may take from earlier work: members of
// earlier blobs, and the checksums of files the step wrote.
type commitReuse struct {
	blobs []layer.ReuseBlob
	known func(name string) (string, bool) // see layer.DiffOptions.Known
}

// reuseFor is what the commit of the step's layer may take: prev's blob
// (the previous build of the step), and the checksums its copy collected.
func (sb *stageBuilder) reuseFor(prev *cache.Record) commitReuse {
	cr := commitReuse{blobs: sb.r.reuseOf(prev)}
	if files := sb.reuse.files; files != nil {
		cr.known = files.Known
	}
	return cr
}

// reuseOf returns the blob of prev (the previous build of a step) as a
// source of members for a commit, when the store has it and its member
// index.
func (r *run) reuseOf(prev *cache.Record) []layer.ReuseBlob {
	if prev == nil || prev.Layer == nil || prev.Layer.Digest == "" {
		return nil
	}
	d := prev.Layer.Digest
	var m layer.Members
	if !r.b.Store.Sidecar(store.SidecarMembers, d, &m) {
		return nil
	}
	return []layer.ReuseBlob{{Members: m, Open: func() (io.ReaderAt, error) {
		return r.b.Store.OpenBlob(d)
	}}}
}
