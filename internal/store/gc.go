package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// BuildLock is held (shared) by every build and (exclusive) by garbage
// collection, so a collection never deletes blobs a running build has
// written but not yet referenced.
type BuildLock struct{ f *os.File }

// LockShared takes the store's build lock in shared mode.
func (s *Store) LockShared() (*BuildLock, error) { return s.gcLock(unix.LOCK_SH) }

// LockExclusive takes the build lock exclusively, failing at once when a
// build runs.
func (s *Store) LockExclusive() (*BuildLock, error) {
	return s.gcLock(unix.LOCK_EX | unix.LOCK_NB)
}

func (s *Store) gcLock(how int) (*BuildLock, error) {
	f, err := os.OpenFile(s.Path("gc.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock store: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another strata build is using the store %s; try again when it ends", s.root)
		}
		return nil, fmt.Errorf("lock store: %w", err)
	}
	return &BuildLock{f: f}, nil
}

// Unlock releases the lock.
func (l *BuildLock) Unlock() {
	if l != nil && l.f != nil {
		unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
	}
}

// ImageRefs returns the blobs (manifests, configs, layers) and layer diffIDs
// the store's images use, named and untagged.
func (s *Store) ImageRefs() (blobs, diffIDs map[digest.Digest]bool, err error) {
	imgs, err := s.AllImages()
	if err != nil {
		return nil, nil, err
	}
	blobs, diffIDs = s.RefsOf(imgs)
	return blobs, diffIDs, nil
}

// RefsOf returns the blobs and layer diffIDs the images imgs use: an
// image index's own blob and those of each of its images the store holds
// (a pull of one platform holds one).
func (s *Store) RefsOf(imgs []Image) (blobs, diffIDs map[digest.Digest]bool) {
	blobs, diffIDs = map[digest.Digest]bool{}, map[digest.Digest]bool{}
	for _, im := range imgs {
		s.refsOf(im.Descriptor.Digest, blobs, diffIDs, 0)
	}
	return blobs, diffIDs
}

// refsOf adds what the manifest or index d uses (depth: how deep in
// indexes d is; an index in an index is not followed).
func (s *Store) refsOf(d digest.Digest, blobs, diffIDs map[digest.Digest]bool, depth int) {
	raw, err := s.ReadBlob(d)
	if err != nil {
		return
	}
	blobs[d] = true
	var m manifestJSON
	if json.Unmarshal(raw, &m) != nil {
		return
	}
	if m.isIndex() {
		if depth == 0 {
			for _, c := range m.Manifests {
				s.refsOf(c.Digest, blobs, diffIDs, depth+1)
			}
		}
		return
	}
	blobs[m.Config.Digest] = true
	for _, l := range m.Layers {
		blobs[l.Digest] = true
	}
	cb, err := s.ReadBlob(m.Config.Digest)
	if err != nil {
		return
	}
	var c configJSON
	if json.Unmarshal(cb, &c) == nil {
		for _, d := range c.RootFS.DiffIDs {
			diffIDs[d] = true
		}
	}
}

// Usage is the size of one part of the store.
type Usage struct {
	Count int
	Bytes int64
}

// Collect deletes every blob and unpacked layer that is not in keepBlobs /
// keepLayers, and returns what it freed. The caller holds LockExclusive.
func (s *Store) Collect(keepBlobs, keepLayers map[digest.Digest]bool) (Usage, error) {
	var freed Usage
	blobDir := s.Path("blobs", "sha256")
	ents, err := os.ReadDir(blobDir)
	if err != nil {
		return freed, fmt.Errorf("collect: %w", err)
	}
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if keepBlobs[d] {
			continue
		}
		if fi, err := e.Info(); err == nil {
			freed.Bytes += fi.Size()
		}
		if err := os.Remove(filepath.Join(blobDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return freed, fmt.Errorf("collect: %w", err)
		}
		freed.Count++
	}
	lents, err := os.ReadDir(s.Path("layers"))
	if err != nil {
		return freed, fmt.Errorf("collect: %w", err)
	}
	for _, e := range lents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if keepLayers[d] {
			continue
		}
		dir := s.Path("layers", e.Name())
		freed.Bytes += DirSize(dir)
		// Rename first so a half-deleted layer is never seen as present.
		tmp := s.Path("tmp", "gc-"+e.Name())
		if err := os.Rename(dir, tmp); err != nil {
			return freed, fmt.Errorf("collect: %w", err)
		}
		if err := os.RemoveAll(tmp); err != nil {
			return freed, fmt.Errorf("collect: %w", err)
		}
		freed.Count++
	}
	n, err := s.collectSidecars(keepBlobs, keepLayers)
	freed.Bytes += n
	if err != nil {
		return freed, fmt.Errorf("collect: %w", err)
	}
	return freed, nil
}

// DirSize is the apparent size of the files below dir.
func DirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
