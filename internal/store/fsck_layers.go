package store

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/opencontainers/go-digest"
	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/ctxio"
	"golang.org/x/sys/unix"
)

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
	users, epochs := f.layerUsers(present)
	for _, lp := range f.sampleLayers(users) {
		if err := ctx.Err(); err != nil {
			return err
		}
		f.checkLayer(ctx, lp, present[lp.diffID], epochs[lp.diffID])
	}
	return nil
}

// layerUsers returns the layers to re-read: those images and cache records
// use (the records are read here, before f.cache judges them, so that their
// layers can be sampled), with the epochs of the layers kept without a blob.
func (f *fsck) layerUsers(present map[digest.Digest]bool) (map[layerPair]bool, map[digest.Digest]*time.Time) {
	users := map[layerPair]bool{}
	for p := range f.imageLayers {
		users[p] = true
	}
	epochs := map[digest.Digest]*time.Time{} // of the layers without blob
	records, _ := cache.RecordFiles(f.s.Path("cache"))
	for _, rp := range records {
		r, err := cache.ReadRecord(rp)
		if err != nil || r.Layer == nil {
			continue
		}
		switch {
		case lazyRecord(r):
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
	return users, epochs
}

// sampleLayers picks, in random order, at most LayerSample of the used
// layers whose blob is sound (or that have none).
func (f *fsck) sampleLayers(users map[layerPair]bool) []layerPair {
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
	return cands
}

// checkLayer re-reads one layer: its blob against its diffID and its
// unpacked directory (when present) against the blob.
func (f *fsck) checkLayer(ctx context.Context, lp layerPair, unpacked bool, epoch *time.Time) {
	ldir := ""
	if unpacked {
		ldir = f.s.LayerDir(lp.diffID)
	}
	f.rep.LayersVerified++
	if lp.blob == "" {
		f.verifyLazy(ctx, lp, ldir, epoch)
		return
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
		return
	}
	if len(missing) > 0 && ldir != "" {
		detail := fmt.Sprintf("incomplete: %d entries of its blob %s differ or are missing, e.g. %s", len(missing), lp.blob, strings.Join(missing[:min(3, len(missing))], ", "))
		f.fix(Problem{Kind: "layer", Subject: f.rel(ldir), Detail: detail}, "removed (it is unpacked again from its blob when needed)", func() error {
			return f.s.removeLayerDir(ldir)
		})
	}
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
	states := f.memberStates(blob, h)
	stream := io.TeeReader(ctxio.Reader(ctx, zr), states)
	want, err := expectedEntries(tar.NewReader(stream))
	if err != nil {
		return "", nil, err
	}
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return "", nil, err
	}
	got := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
	if msg := states.verdict(); msg != "" {
		f.fix(Problem{Kind: "blob", Subject: blob.String(), Detail: "its members sidecar is wrong: " + msg}, "removed the sidecar (the next commit of the layer compresses it again)", func() error {
			return f.s.removeSidecar(SidecarMembers, blob)
		})
	}
	if dir == "" {
		return got, nil, nil
	}
	return got, missingEntries(dir, want), nil
}

// expectedEntries reads a layer tar and returns what its unpacked directory
// must hold: each path's final entry after whiteouts and opaque markers.
func expectedEntries(tr *tar.Reader) (map[string]*expected, error) {
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
			return nil, err
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
		case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
			e.typ = tar.TypeReg
		}
		removeBelow(name)
		want[name] = e
	}
	return want, nil
}

// missingEntries lists (at most 50) entries of want that dir, the unpacked
// layer, does not hold as expected.
func missingEntries(dir string, want map[string]*expected) []string {
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
	return missing
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
			// trusted.* as root, user.* in a user namespace (rootless)
			marked := false
			for _, x := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
				v := make([]byte, 8)
				if n, err := unix.Lgetxattr(p, x, v); err == nil && string(v[:n]) == "y" {
					marked = true
				}
			}
			if !marked {
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

// memberStates returns the writer that hashes a blob's tar stream into h
// and checks the hash states its members sidecar recorded (none when the
// blob has no sidecar or MemberStates is nil).
func (f *fsck) memberStates(blob digest.Digest, h hash.Hash) *stateCheck {
	c := &stateCheck{h: h}
	var raw json.RawMessage
	if f.opts.MemberStates == nil || !f.s.Sidecar(SidecarMembers, blob, &raw) {
		return c
	}
	ends, states, err := f.opts.MemberStates(raw)
	if err != nil || len(ends) != len(states) {
		c.bad = "it cannot be read"
		return c
	}
	c.ends, c.states = ends, states
	return c
}

// stateCheck hashes a tar stream and, where each member ends, compares the
// hash's state with the one recorded for it.
type stateCheck struct {
	h      hash.Hash
	ends   []int64
	states [][]byte
	i      int   // the next member
	pos    int64 // bytes hashed
	bad    string
}

func (c *stateCheck) Write(p []byte) (int, error) {
	n := len(p)
	for {
		c.boundaries()
		if len(p) == 0 {
			return n, nil
		}
		k := len(p)
		if c.i < len(c.ends) && c.bad == "" {
			k = int(min(int64(k), c.ends[c.i]-c.pos))
		}
		c.h.Write(p[:k])
		c.pos += int64(k)
		p = p[k:]
	}
}

// boundaries checks the members that end where the stream is.
func (c *stateCheck) boundaries() {
	for c.i < len(c.ends) && c.bad == "" {
		switch {
		case c.ends[c.i] < c.pos:
			c.bad = fmt.Sprintf("member %d ends at %d, before the %d bytes of the members before it", c.i, c.ends[c.i], c.pos)
			return
		case c.ends[c.i] > c.pos:
			return
		}
		if want := c.states[c.i]; want != nil {
			got, err := c.h.(encoding.BinaryMarshaler).MarshalBinary()
			if err != nil || !bytes.Equal(got, want) {
				c.bad = fmt.Sprintf("the hash state after member %d is not the state of the tar's first %d bytes", c.i, c.pos)
				return
			}
		}
		c.i++
	}
}

// verdict says what is wrong with the recorded members, once the whole
// stream was written ("" if nothing).
func (c *stateCheck) verdict() string {
	c.boundaries()
	if c.bad == "" && c.i < len(c.ends) {
		c.bad = fmt.Sprintf("its members add up to %d bytes, the tar has %d", c.ends[len(c.ends)-1], c.pos)
	}
	return c.bad
}
