package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Sidecar kinds: small JSON facts kept beside a blob or an unpacked layer,
// that make later work cheaper and are never needed for correctness. A
// sidecar goes when what it is about goes (Collect), and a missing or
// unreadable one is the same as none.
const (
	// SidecarMembers is a layer blob's member index (layer.Members), by
	// blob digest.
	SidecarMembers = "members"
	// SidecarFiles is the content checksums of an unpacked layer's regular
	// files, by diffID.
	SidecarFiles = "files"
)

// sidecarKinds lists the sidecar kinds.
func sidecarKinds() []string { return []string{SidecarMembers, SidecarFiles} }

// ofBlob reports whether sidecars of kind are about blobs (else unpacked
// layers), and whether kind is known.
func ofBlob(kind string) (blob, known bool) {
	switch kind {
	case SidecarMembers:
		return true, true
	case SidecarFiles:
		return false, true
	}
	return false, false
}

func (s *Store) sidecarPath(kind string, d digest.Digest) string {
	return s.Path("sidecars", kind, d.Encoded()+".json")
}

// PutSidecar records v (JSON) as the sidecar kind of d.
func (s *Store) PutSidecar(kind string, d digest.Digest, v any) error {
	if _, ok := ofBlob(kind); !ok {
		return fmt.Errorf("unknown sidecar kind %q", kind)
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("sidecar %s: %w", kind, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sidecar %s of %s: %w", kind, d, err)
	}
	p := s.sidecarPath(kind, d)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("sidecar %s of %s: %w", kind, d, err)
	}
	return s.writeFileAtomic(p, b)
}

// Sidecar reads the sidecar kind of d into v and reports whether there was
// a readable one.
func (s *Store) Sidecar(kind string, d digest.Digest, v any) bool {
	if d.Validate() != nil {
		return false
	}
	b, err := os.ReadFile(s.sidecarPath(kind, d))
	return err == nil && json.Unmarshal(b, v) == nil
}

// removeSidecar deletes the sidecar kind of d, if there is one.
func (s *Store) removeSidecar(kind string, d digest.Digest) error {
	if err := os.Remove(s.sidecarPath(kind, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// collectSidecars deletes the sidecars whose blob or layer is not kept,
// and returns how many bytes that freed.
func (s *Store) collectSidecars(keepBlobs, keepLayers map[digest.Digest]bool) (int64, error) {
	var freed int64
	for _, kind := range sidecarKinds() {
		dir := s.Path("sidecars", kind)
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return freed, err
		}
		keep := keepLayers
		if blob, _ := ofBlob(kind); blob {
			keep = keepBlobs
		}
		for _, e := range ents {
			enc, ok := strings.CutSuffix(e.Name(), ".json")
			d := digest.NewDigestFromEncoded(digest.SHA256, enc)
			if ok && d.Validate() == nil && keep[d] {
				continue
			}
			if fi, err := e.Info(); err == nil {
				freed += fi.Size()
			}
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return freed, err
			}
		}
	}
	return freed, nil
}
