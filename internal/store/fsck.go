package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-build/strata/internal/cache"
	"golang.org/x/sys/unix"
)

// FsckOptions tune Fsck.
type FsckOptions struct {
	// Repair fixes what can be fixed: corrupt blobs are deleted (and the
	// images that need them untagged), cache records whose layer is gone are
	// deleted, incomplete unpacked layers are removed (they are unpacked
	// again from their blob when needed), and what dead processes left in
	// run/, tmp/ and the runc state is released and removed. Repair needs the
	// store to itself: it fails when another strata process uses it.
	Repair bool

	// Decompress opens the uncompressed tar of a layer blob. With it, Fsck
	// re-derives the diffID of sampled layer blobs and checks that their
	// unpacked directories hold every entry; nil skips those checks.
	Decompress func(io.Reader) (io.ReadCloser, error)
	// DiffDir computes the diffID of an unpacked layer directory (its tar
	// with mtimes clamped to epoch, when not nil). With it, the sampled
	// layers that cache records hold without a blob (the layers of stages a
	// build did not export) are checked against their recorded diffID; nil
	// skips that check.
	DiffDir func(ctx context.Context, dir string, epoch *time.Time) (digest.Digest, error)
	// MemberStates reads a layer blob's members sidecar (its JSON): where
	// each member ends in the tar stream and the sha256 state recorded
	// after it (nil: none), which a later commit takes up instead of
	// hashing those bytes (layer.MemberStates). With it, the sidecar of a
	// sampled blob is checked while its diffID is re-derived, and with
	// Repair a wrong one is removed; nil skips that check.
	MemberStates func(sidecar []byte) (ends []int64, states [][]byte, err error)
	// LayerSample is how many referenced layers get that deep check
	// (chosen at random); a negative value checks all of them.
	LayerSample int

	// Containers lists the containers in the store's runc state directory
	// (runc --root ROOT/runc list); nil skips the container check.
	Containers func(ctx context.Context) ([]string, error)
	// DeleteContainer force-deletes one of them (for Repair).
	DeleteContainer func(ctx context.Context, id string) error

	// Progress, when set, is called with each problem as it is found (and,
	// with Repair, handled).
	Progress func(Problem)
}

// Problem is one thing Fsck found wrong.
type Problem struct {
	Kind     string // blob, image, layer, cache, session, mount, container, temp, layout
	Subject  string // what it is about: a digest, an image name, a path below the root
	Detail   string // what is wrong
	Action   string // with Repair: what was done ("deleted", "untagged", ...)
	Repaired bool
}

func (p Problem) String() string {
	s := fmt.Sprintf("%s %s: %s", p.Kind, p.Subject, p.Detail)
	switch {
	case p.Repaired:
		s += " (" + p.Action + ")"
	case p.Action != "":
		s += " (not repaired: " + p.Action + ")"
	}
	return s
}

// FsckReport is what Fsck checked and found.
type FsckReport struct {
	Blobs          int // blobs whose digest was verified
	Images         int // tagged images checked
	Layers         int // unpacked layer directories
	LayersVerified int // layers whose blob was re-read (diffID) and directory compared
	CacheRecords   int
	// InUse is set when another strata process held the store: temp files
	// younger than StaleTempAge may belong to it and were not judged.
	InUse    bool
	Problems []Problem
}

// Remaining is the number of problems left unrepaired.
func (r *FsckReport) Remaining() int {
	n := 0
	for _, p := range r.Problems {
		if !p.Repaired {
			n++
		}
	}
	return n
}

// Fsck checks the store: every blob against its digest; every tagged image's
// manifest, config and layers (present, parseable, consistent); the unpacked
// layers under layers/ (names, and for a sample, the diffID of their blob
// and that the directory holds every entry of it); the build cache records
// (readable, their layer blob present and sound); and what dead processes
// left behind: sessions in run/, their mounts and runc containers, and temp
// files in tmp/ and the cache. With opts.Repair it fixes what it can.
//
// The error is for Fsck itself failing (the store cannot be read or locked);
// what is wrong with the store is in the report.
func (s *Store) Fsck(ctx context.Context, opts FsckOptions) (*FsckReport, error) {
	f := &fsck{s: s, opts: opts, rep: &FsckReport{}}
	// The exclusive build lock means no other strata process (every command
	// holds the shared lock while it runs) is writing: every temp file is a
	// leftover. Without it, only the read-only checks are safe.
	lock, err := s.LockExclusive()
	if err != nil {
		if opts.Repair {
			return nil, fmt.Errorf("fsck --repair: %w", err)
		}
		f.rep.InUse = true
		if lock, err = s.LockShared(); err != nil {
			return nil, err
		}
	}
	defer lock.Unlock()
	// The temp files there are now are the ones to judge. Then a plain
	// check goes down to the shared lock: builds may start while it reads
	// (with Repair they wait until it is done).
	f.staleTemps = f.listTemps()
	if !f.rep.InUse && !opts.Repair {
		if err := unix.Flock(int(lock.f.Fd()), unix.LOCK_SH); err != nil {
			return nil, fmt.Errorf("fsck: %w", err)
		}
	}
	steps := []func(context.Context) error{f.runtime, f.layout, f.blobs, f.images, f.layers, f.cache, f.temps}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return f.rep, err
		}
		if err := step(ctx); err != nil {
			return f.rep, err
		}
	}
	return f.rep, nil
}

type fsck struct {
	s    *Store
	opts FsckOptions
	rep  *FsckReport

	liveSessions map[string]bool
	blobOK       map[digest.Digest]bool // verified blobs
	blobBad      map[digest.Digest]bool // corrupt (deleted with Repair)
	// layer pairs (blob, diffID) in use, and by whom
	imageLayers map[layerPair][]string // → image names
	cacheLayers map[layerPair][]string // → cache record paths
	badPairs    map[layerPair]string   // blob content does not have the diffID
	layerDirs   map[digest.Digest]bool // unpacked layers present, by diffID
	staleTemps  []string               // temp files left by processes that died
}

type layerPair struct{ blob, diffID digest.Digest }

func (f *fsck) report(p Problem) {
	f.rep.Problems = append(f.rep.Problems, p)
	if f.opts.Progress != nil {
		f.opts.Progress(p)
	}
}

// fix runs repair (with Repair set) for the problem p and reports it.
func (f *fsck) fix(p Problem, action string, repair func() error) {
	if f.opts.Repair && repair != nil {
		if err := repair(); err != nil {
			p.Action = action + " failed: " + err.Error()
		} else {
			p.Action, p.Repaired = action, true
		}
	} else if f.opts.Repair {
		p.Action = action
	}
	f.report(p)
}

func (f *fsck) rel(p string) string {
	if r, err := filepath.Rel(f.s.root, p); err == nil {
		return r
	}
	return p
}

func (f *fsck) layout(context.Context) error {
	b, err := os.ReadFile(f.s.Path(ocispec.ImageLayoutFile))
	var l ocispec.ImageLayout
	switch {
	case err != nil:
		f.report(Problem{Kind: "layout", Subject: ocispec.ImageLayoutFile, Detail: err.Error()})
	case json.Unmarshal(b, &l) != nil || l.Version == "":
		f.fix(Problem{Kind: "layout", Subject: ocispec.ImageLayoutFile, Detail: "not a valid OCI layout file"}, "rewritten", func() error {
			b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
			return f.s.writeFileAtomic(f.s.Path(ocispec.ImageLayoutFile), b)
		})
	}
	if _, err := f.s.readIndex(); err != nil {
		f.report(Problem{Kind: "layout", Subject: ocispec.ImageIndexFile, Detail: err.Error() + " (the image names are lost; restore index.json from a backup)"})
	}
	return nil
}

// lazyRecord reports whether r's layer was recorded without a blob: its
// unpacked directory is then the layer's only copy.
func lazyRecord(r *cache.Record) bool {
	return r.Layer != nil && r.Layer.Lazy() && r.Layer.DiffID.Validate() == nil
}

func (f *fsck) cache(context.Context) error {
	f.cacheLayers = map[layerPair][]string{}
	records, _ := cache.RecordFiles(f.s.Path("cache"))
	for _, p := range records {
		f.rep.CacheRecords++
		rel := f.rel(p)
		remove := func() error { return os.Remove(p) }
		if !cache.ValidRecordPath(p) {
			f.fix(Problem{Kind: "cache", Subject: rel, Detail: "not a cache record name"}, "deleted", remove)
			continue
		}
		r, err := cache.ReadRecord(p)
		if err != nil {
			f.fix(Problem{Kind: "cache", Subject: rel, Detail: "unreadable record: " + err.Error()}, "deleted", remove)
			continue
		}
		if r.Layer == nil {
			continue
		}
		lp := layerPair{r.Layer.Digest, r.Layer.DiffID}
		var detail string
		switch {
		case lazyRecord(r) && !f.layerDirs[lp.diffID] && !f.s.HasLayer(lp.diffID): // (a build adopts the dir before it writes the record)
			detail = "its layer " + lp.diffID.String() + " has no blob and is not unpacked"
		case lazyRecord(r):
			detail = f.badPairs[lp]
		case r.Layer.Digest.Validate() != nil || r.Layer.DiffID.Validate() != nil:
			detail = "invalid layer digest"
		case !f.blobOK[lp.blob] && !f.blobBad[lp.blob] && func() bool { f.lateBlob(lp.blob); return false }():
		case f.blobBad[lp.blob]:
			detail = "its layer blob " + lp.blob.String() + " is corrupt"
		case !f.blobOK[lp.blob]:
			detail = "its layer blob " + lp.blob.String() + " is missing"
		case f.badPairs[lp] != "":
			detail = f.badPairs[lp]
		}
		// A missing unpacked layer is not a problem: builds unpack a
		// layer from its blob when a step first needs its files.
		if detail == "" {
			f.cacheLayers[lp] = append(f.cacheLayers[lp], rel)
			continue
		}
		f.fix(Problem{Kind: "cache", Subject: rel, Detail: detail + " (the step will run again)"}, "deleted", remove)
	}
	return nil
}

// listTemps lists the temp files that no running process can own: all of
// them when Fsck has the store to itself, else those older than StaleTempAge.
func (f *fsck) listTemps() []string {
	before := time.Now().Add(-StaleTempAge)
	var cands []string
	if ents, err := os.ReadDir(f.s.Path("tmp")); err == nil {
		for _, e := range ents {
			cands = append(cands, f.s.Path("tmp", e.Name()))
		}
	}
	_, recTemps := cache.RecordFiles(f.s.Path("cache"))
	cands = append(cands, recTemps...)
	for _, sub := range []string{"mounts", "stat"} {
		if ents, err := os.ReadDir(f.s.Path("cache", sub)); err == nil {
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") {
					cands = append(cands, f.s.Path("cache", sub, e.Name()))
				}
			}
		}
	}
	var out []string
	for _, p := range cands {
		fi, err := os.Lstat(p)
		if err == nil && (!f.rep.InUse || fi.ModTime().Before(before)) {
			out = append(out, p)
		}
	}
	return out
}

func (f *fsck) temps(context.Context) error {
	for _, p := range f.staleTemps {
		fi, err := os.Lstat(p)
		if err != nil {
			continue // gone meanwhile
		}
		detail := "temp file left by a strata process that no longer runs"
		if fi.IsDir() {
			detail = "temp directory left by a strata process that no longer runs"
		}
		if m := MountsUnder(p); len(m) > 0 {
			detail += fmt.Sprintf(" (%d mounts)", len(m))
		}
		f.fix(Problem{Kind: "temp", Subject: f.rel(p), Detail: detail}, "removed", func() error {
			unmountUnder(p)
			return os.RemoveAll(p)
		})
	}
	return nil
}
