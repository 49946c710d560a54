package store

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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

// ---- run/, mounts, runc containers ----

// sessionAlive reports whether a run/ entry is a session of a running process.
func sessionAlive(name string) (valid, alive bool) {
	pidS, startS, ok := strings.Cut(name, "-")
	if !ok {
		return false, false
	}
	pid, err1 := strconv.Atoi(pidS)
	start, err2 := strconv.ParseUint(startS, 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return false, false
	}
	return true, procStartTime(pid) == start
}

func (f *fsck) runtime(ctx context.Context) error {
	f.liveSessions = map[string]bool{}
	ents, err := os.ReadDir(f.s.Path("run"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsck: %w", err)
	}
	var containers []string
	if f.opts.Containers != nil {
		containers, err = f.opts.Containers(ctx)
		if err != nil {
			f.report(Problem{Kind: "container", Subject: f.rel(f.s.Path("runc")), Detail: "cannot list runc containers: " + err.Error()})
		}
	}
	for _, e := range ents {
		if _, alive := sessionAlive(e.Name()); alive {
			f.liveSessions[e.Name()] = true
		}
	}
	// Containers first: a dead session's container may still hold its mounts.
	for _, id := range containers {
		// Judged by its process, not by run/ as listed above: a build
		// that started since then has a container too.
		session, ok := containerSession(id)
		if _, alive := sessionAlive(session); ok && alive {
			continue
		}
		detail := "runc container of a strata process that no longer runs"
		if !ok {
			detail = "runc container strata did not name"
		}
		f.fix(Problem{Kind: "container", Subject: id, Detail: detail}, "deleted", func() error {
			if f.opts.DeleteContainer == nil {
				return errors.New("no way to delete containers")
			}
			return f.opts.DeleteContainer(ctx, id)
		})
	}
	for _, e := range ents {
		name := e.Name()
		if f.liveSessions[name] {
			continue
		}
		valid, _ := sessionAlive(name)
		dir := f.s.Path("run", name)
		if _, err := os.Lstat(dir); err != nil {
			continue // its process removed it as it ended
		}
		detail := "work area of a strata process that no longer runs"
		if !valid {
			detail = "not a strata session"
		}
		if m := MountsUnder(dir); len(m) > 0 {
			detail += fmt.Sprintf(", %d mounts", len(m))
		}
		f.fix(Problem{Kind: "session", Subject: f.rel(dir), Detail: detail}, "unmounted and removed", func() error {
			unmountUnder(dir)
			if m := MountsUnder(dir); len(m) > 0 {
				return fmt.Errorf("still mounted: %s", strings.Join(m, " "))
			}
			return os.RemoveAll(dir)
		})
	}
	// Mounts anywhere else below the root (not the root itself, which may be
	// a mount point) belong to nobody.
	for _, m := range MountsUnder(f.s.root) {
		if m == f.s.root {
			continue
		}
		r := f.rel(m)
		first, rest, _ := strings.Cut(r, string(filepath.Separator))
		if first == "run" {
			session, _, _ := strings.Cut(rest, string(filepath.Separator))
			if _, alive := sessionAlive(session); alive {
				continue
			}
			if _, err := os.Stat(f.s.Path("run", session)); err == nil {
				continue // counted (and handled) with its session above
			}
		}
		f.fix(Problem{Kind: "mount", Subject: m, Detail: "mount below the store that no running strata process owns"}, "unmounted", func() error {
			if !mounted(m) {
				return nil
			}
			if err := unix.Unmount(m, 0); err != nil {
				return unix.Unmount(m, unix.MNT_DETACH)
			}
			return nil
		})
	}
	return nil
}

func mounted(p string) bool {
	for _, m := range MountsUnder(p) {
		if m == p {
			return true
		}
	}
	return false
}

// containerSession returns the session of a container id strata made:
// strata-PID-START-SUFFIX.
func containerSession(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, "strata-")
	if !ok {
		return "", false
	}
	parts := strings.SplitN(rest, "-", 3)
	if len(parts) < 2 {
		return "", false
	}
	name := parts[0] + "-" + parts[1]
	valid, _ := sessionAlive(name)
	return name, valid
}

// ---- layout ----

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

// ---- blobs ----

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (f *fsck) blobs(ctx context.Context) error {
	f.blobOK, f.blobBad = map[digest.Digest]bool{}, map[digest.Digest]bool{}
	dir := f.s.Path("blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	buf := make([]byte, 1<<20)
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(dir, e.Name())
		if !isHex64(e.Name()) || !e.Type().IsRegular() {
			f.fix(Problem{Kind: "blob", Subject: f.rel(p), Detail: "not a blob (name or file type)"}, "removed", func() error { return os.RemoveAll(p) })
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		got, err := hashFile(p, buf)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile (only without the exclusive lock)
			}
			f.blobBad[d] = true
			f.fix(Problem{Kind: "blob", Subject: d.String(), Detail: "unreadable: " + err.Error()}, "deleted", func() error { return os.Remove(p) })
			continue
		}
		f.rep.Blobs++
		if got != d.Encoded() {
			f.blobBad[d] = true
			f.fix(Problem{Kind: "blob", Subject: d.String(), Detail: "content hashes to sha256:" + got}, "deleted", func() error { return os.Remove(p) })
			continue
		}
		f.blobOK[d] = true
	}
	return nil
}

func hashFile(p string, buf []byte) (string, error) {
	fh, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, fh, buf); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// blob reads a verified blob; "" and an error say what is wrong with it.
func (f *fsck) blob(d digest.Digest) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("invalid digest %q", d)
	}
	if !f.blobOK[d] && !f.blobBad[d] {
		f.lateBlob(d)
	}
	switch {
	case f.blobBad[d]:
		return nil, fmt.Errorf("blob %s is corrupt", d)
	case !f.blobOK[d]:
		return nil, fmt.Errorf("blob %s is missing", d)
	}
	b, err := os.ReadFile(f.s.BlobPath(d))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return b, nil
}

// lateBlob verifies a blob that was not there when the blobs were listed:
// another process (Fsck without the exclusive lock) wrote it since.
func (f *fsck) lateBlob(d digest.Digest) {
	if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
		return
	}
	got, err := hashFile(f.s.BlobPath(d), make([]byte, 256<<10))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		f.blobBad[d] = true
		f.report(Problem{Kind: "blob", Subject: d.String(), Detail: "unreadable: " + err.Error()})
	case got != d.Encoded():
		f.blobBad[d] = true
		f.report(Problem{Kind: "blob", Subject: d.String(), Detail: "content hashes to sha256:" + got})
	default:
		f.rep.Blobs++
		f.blobOK[d] = true
	}
}

// ---- images ----

type fsckManifest struct {
	MediaType string               `json:"mediaType"`
	Config    ocispec.Descriptor   `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Manifests []ocispec.Descriptor `json:"manifests"`
}

type fsckConfig struct {
	RootFS struct {
		DiffIDs []digest.Digest `json:"diff_ids"`
	} `json:"rootfs"`
}

// manifestIssues checks the manifest d (an image, or an index of images) and
// everything it refers to, recording its layers for name.
func (f *fsck) manifestIssues(name string, d digest.Digest, size int64, depth int) []string {
	raw, err := f.blob(d)
	if err != nil {
		return []string{"manifest: " + err.Error()}
	}
	if size > 0 && int64(len(raw)) != size {
		return []string{fmt.Sprintf("manifest %s: %d bytes, the index says %d", d, len(raw), size)}
	}
	var m fsckManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return []string{fmt.Sprintf("manifest %s: %v", d, err)}
	}
	if len(m.Manifests) > 0 || strings.Contains(m.MediaType, "index") || strings.Contains(m.MediaType, "manifest.list") {
		if depth > 0 {
			return []string{fmt.Sprintf("manifest %s: nested index", d)}
		}
		var out []string
		for _, c := range m.Manifests {
			out = append(out, f.manifestIssues(name, c.Digest, c.Size, depth+1)...)
		}
		return out
	}
	var out []string
	cfgRaw, err := f.blob(m.Config.Digest)
	if err != nil {
		return []string{"config: " + err.Error()}
	}
	if m.Config.Size > 0 && int64(len(cfgRaw)) != m.Config.Size {
		out = append(out, fmt.Sprintf("config %s: %d bytes, the manifest says %d", m.Config.Digest, len(cfgRaw), m.Config.Size))
	}
	var cfg fsckConfig
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return append(out, fmt.Sprintf("config %s: %v", m.Config.Digest, err))
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		out = append(out, fmt.Sprintf("%d layers but %d diffIDs", len(m.Layers), len(cfg.RootFS.DiffIDs)))
	}
	for i, l := range m.Layers {
		if _, err := f.blob(l.Digest); err != nil {
			out = append(out, fmt.Sprintf("layer %d: %v", i+1, err))
			continue
		}
		if l.Size > 0 && f.s.blobSize(l.Digest) != l.Size {
			out = append(out, fmt.Sprintf("layer %d: blob %s has %d bytes, the manifest says %d", i+1, l.Digest, f.s.blobSize(l.Digest), l.Size))
		}
		if i < len(cfg.RootFS.DiffIDs) {
			if err := cfg.RootFS.DiffIDs[i].Validate(); err != nil {
				out = append(out, fmt.Sprintf("layer %d: invalid diffID %q", i+1, cfg.RootFS.DiffIDs[i]))
				continue
			}
			p := layerPair{l.Digest, cfg.RootFS.DiffIDs[i]}
			f.imageLayers[p] = append(f.imageLayers[p], name)
		}
	}
	return out
}

func (f *fsck) images(context.Context) error {
	f.imageLayers = map[layerPair][]string{}
	idx, err := f.s.readIndex()
	if err != nil {
		return nil // reported by layout
	}
	for _, m := range idx.Manifests {
		name := m.Annotations[RefNameAnnotation]
		subject := name
		if subject == "" {
			subject = m.Digest.String()
		}
		f.rep.Images++
		issues := f.manifestIssues(subject, m.Digest, m.Size, 0)
		if len(issues) == 0 {
			continue
		}
		d := m.Digest
		f.fix(Problem{Kind: "image", Subject: subject, Detail: strings.Join(issues, "; ")}, "untagged", func() error {
			return f.s.removeIndexEntry(name, d)
		})
	}
	return nil
}

// removeIndexEntry drops the index entry named name that points at d (and
// not a newer one of the same name).
func (s *Store) removeIndexEntry(name string, d digest.Digest) error {
	_, err := s.removeEntries(func(m ocispec.Descriptor) bool {
		return m.Annotations[RefNameAnnotation] == name && m.Digest == d
	})
	return err
}

// ---- cache records ----

type fsckRecord struct {
	Layer *struct {
		Digest digest.Digest `json:"digest"`
		DiffID digest.Digest `json:"diffID"`
		Epoch  *int64        `json:"epoch"`
	} `json:"layer"`
}

// lazy reports whether the record's layer was recorded without a blob: its
// unpacked directory is then the layer's only copy.
func (r *fsckRecord) lazy() bool {
	return r.Layer != nil && r.Layer.Digest == "" && r.Layer.DiffID.Validate() == nil
}

// cacheRecords lists the record files under cache/keys and the temp files
// left beside them.
func (f *fsck) cacheRecords() (records, temps []string) {
	root := f.s.Path("cache", "keys")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		switch {
		case strings.HasPrefix(d.Name(), ".tmp-"):
			temps = append(temps, p)
		case d.IsDir():
		default:
			records = append(records, p)
		}
		return nil
	})
	return records, temps
}

func (f *fsck) cache(context.Context) error {
	f.cacheLayers = map[layerPair][]string{}
	records, _ := f.cacheRecords()
	for _, p := range records {
		f.rep.CacheRecords++
		rel := f.rel(p)
		remove := func() error { return os.Remove(p) }
		if !isHex64(filepath.Base(p)) || filepath.Base(filepath.Dir(p)) != filepath.Base(p)[:2] {
			f.fix(Problem{Kind: "cache", Subject: rel, Detail: "not a cache record name"}, "deleted", remove)
			continue
		}
		b, err := os.ReadFile(p)
		var r fsckRecord
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
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
		case r.lazy() && !f.layerDirs[lp.diffID] && !f.s.HasLayer(lp.diffID): // (a build adopts the dir before it writes the record)
			detail = "its layer " + lp.diffID.String() + " has no blob and is not unpacked"
		case r.lazy():
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

// ---- unpacked layers ----

func (f *fsck) layers(ctx context.Context) error {
	f.badPairs = map[layerPair]string{}
	dir := f.s.Path("layers")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	present := map[digest.Digest]bool{}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if !isHex64(e.Name()) || !e.IsDir() {
			f.fix(Problem{Kind: "layer", Subject: f.rel(p), Detail: "not an unpacked layer (name or file type)"}, "removed", func() error { return f.s.removeLayerDir(p) })
			continue
		}
		f.rep.Layers++
		present[digest.NewDigestFromEncoded(digest.SHA256, e.Name())] = true
	}
	f.layerDirs = present
	if f.opts.Decompress == nil || f.opts.LayerSample == 0 {
		return nil
	}
	// The layers to re-read: those in use whose blob is sound. The cache
	// records are read here too (before f.cache judges them) so that their
	// layers can be sampled.
	users := map[layerPair]bool{}
	for p := range f.imageLayers {
		users[p] = true
	}
	epochs := map[digest.Digest]*time.Time{} // of the layers without blob
	records, _ := f.cacheRecords()
	for _, rp := range records {
		var r fsckRecord
		if b, err := os.ReadFile(rp); err != nil || json.Unmarshal(b, &r) != nil || r.Layer == nil {
			continue
		}
		switch {
		case r.lazy():
			if f.opts.DiffDir != nil && present[r.Layer.DiffID] {
				users[layerPair{"", r.Layer.DiffID}] = true
				if r.Layer.Epoch != nil {
					t := time.Unix(*r.Layer.Epoch, 0)
					epochs[r.Layer.DiffID] = &t
				}
			}
		case r.Layer.Digest.Validate() == nil && r.Layer.DiffID.Validate() == nil:
			users[layerPair{r.Layer.Digest, r.Layer.DiffID}] = true
		}
	}
	var cands []layerPair
	for p := range users {
		if f.blobOK[p.blob] || p.blob == "" {
			cands = append(cands, p)
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].blob+cands[i].diffID < cands[j].blob+cands[j].diffID })
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	if n := f.opts.LayerSample; n > 0 && n < len(cands) {
		cands = cands[:n]
	}
	for _, lp := range cands {
		if err := ctx.Err(); err != nil {
			return err
		}
		ldir := ""
		if present[lp.diffID] {
			ldir = f.s.LayerDir(lp.diffID)
		}
		f.rep.LayersVerified++
		if lp.blob == "" {
			f.verifyLazy(ctx, lp, ldir, epochs[lp.diffID])
			continue
		}
		gotDiffID, missing, err := f.verifyLayer(ctx, lp.blob, ldir)
		switch {
		case err != nil:
			f.badPairs[lp] = fmt.Sprintf("layer blob %s cannot be read as a tar: %v", lp.blob, err)
		case gotDiffID != lp.diffID:
			f.badPairs[lp] = fmt.Sprintf("layer blob %s has diffID %s, not %s", lp.blob, gotDiffID, lp.diffID)
		}
		if msg := f.badPairs[lp]; msg != "" {
			// The images that use it cannot be unpacked; their fix is below.
			for _, name := range f.imageLayers[lp] {
				f.fixImage(name, msg)
			}
			continue
		}
		if len(missing) > 0 && ldir != "" {
			detail := fmt.Sprintf("incomplete: %d entries of its blob %s differ or are missing, e.g. %s", len(missing), lp.blob, strings.Join(missing[:min(3, len(missing))], ", "))
			f.fix(Problem{Kind: "layer", Subject: f.rel(ldir), Detail: detail}, "removed (it is unpacked again from its blob when needed)", func() error {
				return f.s.removeLayerDir(ldir)
			})
		}
	}
	return nil
}

// verifyLazy checks the unpacked layer dir, the only copy of a layer that
// cache records hold without a blob, against its diffID. A directory that no
// longer matches is removed with Repair (and its records, in f.cache).
func (f *fsck) verifyLazy(ctx context.Context, lp layerPair, dir string, epoch *time.Time) {
	got, err := f.opts.DiffDir(ctx, dir, epoch)
	switch {
	case err != nil:
		f.badPairs[lp] = fmt.Sprintf("its layer %s (kept without a blob) cannot be read: %v", lp.diffID, err)
	case got != lp.diffID:
		f.badPairs[lp] = fmt.Sprintf("its layer %s (kept without a blob) now has diffID %s", lp.diffID, got)
	default:
		return
	}
	f.fix(Problem{Kind: "layer", Subject: f.rel(dir), Detail: f.badPairs[lp]}, "removed (the steps that made it run again)", func() error {
		return f.s.removeLayerDir(dir)
	})
}

// fixImage untags the image name (found sound before) for a problem found later.
func (f *fsck) fixImage(name, detail string) {
	idx, err := f.s.readIndex()
	if err != nil {
		return
	}
	for _, m := range idx.Manifests {
		subject := m.Annotations[RefNameAnnotation]
		if subject == "" {
			subject = m.Digest.String()
		}
		if subject != name {
			continue
		}
		n, d := m.Annotations[RefNameAnnotation], m.Digest
		f.fix(Problem{Kind: "image", Subject: name, Detail: detail}, "untagged", func() error { return f.s.removeIndexEntry(n, d) })
	}
}

// removeLayerDir renames a layer directory out of layers/ (so it is never
// seen half-deleted) and deletes it.
func (s *Store) removeLayerDir(p string) error {
	tmp, err := os.MkdirTemp(s.Path("tmp"), "fsck-")
	if err != nil {
		return err
	}
	if err := os.Rename(p, filepath.Join(tmp, "layer")); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.RemoveAll(tmp)
}

// expected is what an entry of a layer tar leaves in the unpacked directory.
type expected struct {
	typ    byte // tar type; 'w' for a whiteout (char device 0/0)
	size   int64
	link   string
	opaque bool
}

// verifyLayer reads the layer blob, returns the digest of its uncompressed
// tar (the diffID) and, when dir is not empty, the entries of the tar that
// dir does not hold as the tar says (at most a few dozen).
func (f *fsck) verifyLayer(ctx context.Context, blob digest.Digest, dir string) (digest.Digest, []string, error) {
	fh, err := f.s.OpenBlob(blob)
	if err != nil {
		return "", nil, err
	}
	defer fh.Close()
	zr, err := f.opts.Decompress(fh)
	if err != nil {
		return "", nil, err
	}
	defer zr.Close()
	h := sha256.New()
	stream := io.TeeReader(ctxReader{ctx, zr}, h)
	tr := tar.NewReader(stream)
	want := map[string]*expected{}
	removeBelow := func(p string) {
		for k := range want {
			if strings.HasPrefix(k, p+"/") {
				delete(want, k)
			}
		}
	}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", nil, err
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if name == "." || name == ".." || strings.HasPrefix(name, "../") || hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		parent, base := path.Split(name)
		parent = strings.TrimSuffix(parent, "/")
		switch {
		case base == ".wh..wh..opq":
			if parent != "" {
				if w := want[parent]; w != nil && w.typ == tar.TypeDir {
					w.opaque = true
				} else {
					want[parent] = &expected{typ: tar.TypeDir, opaque: true}
				}
			}
			continue
		case strings.HasPrefix(base, ".wh..wh."):
			continue
		case strings.HasPrefix(base, ".wh."):
			target := path.Join(parent, strings.TrimPrefix(base, ".wh."))
			removeBelow(target)
			want[target] = &expected{typ: 'w'}
			continue
		}
		e := &expected{typ: hdr.Typeflag, size: hdr.Size, link: hdr.Linkname}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if w := want[name]; w != nil && w.typ == tar.TypeDir {
				continue // directories merge
			}
		case tar.TypeLink:
			t := path.Clean(strings.TrimPrefix(hdr.Linkname, "/"))
			if w := want[t]; w != nil {
				c := *w
				e = &c
			} else {
				e = &expected{typ: tar.TypeReg, size: -1}
			}
		case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
			e.typ = tar.TypeReg
		}
		removeBelow(name)
		want[name] = e
	}
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return "", nil, err
	}
	got := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
	if dir == "" {
		return got, nil, nil
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	var missing []string
	for _, n := range names {
		// Entries below a symlink or a non-directory were resolved elsewhere
		// (or refused) when the layer was unpacked: skip them.
		skip := false
		for p := path.Dir(n); p != "." && p != "/"; p = path.Dir(p) {
			if w := want[p]; w != nil && w.typ != tar.TypeDir {
				skip = true
				break
			}
		}
		if skip {
			continue
		}
		if msg := checkEntry(dir, n, want[n]); msg != "" {
			missing = append(missing, msg)
			if len(missing) >= 50 {
				break
			}
		}
	}
	return got, missing, nil
}

// checkEntry compares the entry rel of the unpacked layer dir with e.
func checkEntry(dir, rel string, e *expected) string {
	parent, base := path.Split(rel)
	pdir, err := securejoin.SecureJoin(dir, parent)
	if err != nil {
		return rel + " (" + err.Error() + ")"
	}
	p := filepath.Join(pdir, base)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return rel + " (missing)"
	}
	typ := st.Mode & unix.S_IFMT
	bad := func(what string) string { return rel + " (" + what + ")" }
	switch e.typ {
	case tar.TypeDir:
		if typ != unix.S_IFDIR {
			return bad("not a directory")
		}
		if e.opaque && os.Geteuid() == 0 {
			v := make([]byte, 8)
			n, err := unix.Lgetxattr(p, "trusted.overlay.opaque", v)
			if err != nil || string(v[:n]) != "y" {
				return bad("not marked opaque")
			}
		}
	case tar.TypeReg:
		if typ != unix.S_IFREG {
			return bad("not a regular file")
		}
		if e.size >= 0 && st.Size != e.size {
			return bad(fmt.Sprintf("%d bytes, the layer has %d", st.Size, e.size))
		}
	case tar.TypeSymlink:
		if typ != unix.S_IFLNK {
			return bad("not a symlink")
		}
		if t, err := os.Readlink(p); err != nil || t != e.link {
			return bad("wrong symlink target")
		}
	case 'w':
		if typ != unix.S_IFCHR || st.Rdev != 0 {
			return bad("not a whiteout")
		}
	case tar.TypeChar:
		if typ != unix.S_IFCHR {
			return bad("not a character device")
		}
	case tar.TypeBlock:
		if typ != unix.S_IFBLK {
			return bad("not a block device")
		}
	case tar.TypeFifo:
		if typ != unix.S_IFIFO {
			return bad("not a fifo")
		}
	}
	return ""
}

// ---- temp files ----

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
	_, recTemps := f.cacheRecords()
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
