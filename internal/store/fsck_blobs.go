package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

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

// manifestJSON is what the store reads of a manifest or an image index
// (fsck, GC, image IDs).
type manifestJSON struct {
	MediaType string               `json:"mediaType"`
	Config    ocispec.Descriptor   `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Manifests []ocispec.Descriptor `json:"manifests"`
}

// isIndex reports whether m is an image index (or a Docker manifest
// list): by its media type, or, where it has none, by its manifests.
func (m manifestJSON) isIndex() bool {
	return types.MediaType(m.MediaType).IsIndex() || m.Manifests != nil
}

type configJSON struct {
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
	var m manifestJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		return []string{fmt.Sprintf("manifest %s: %v", d, err)}
	}
	if m.isIndex() {
		if depth > 0 {
			return []string{fmt.Sprintf("manifest %s: nested index", d)}
		}
		// A pull keeps the index and the images of the platforms it
		// needed: those the store holds are checked, and there must be one.
		var out []string
		held := 0
		for _, c := range m.Manifests {
			if !f.s.HasBlob(c.Digest) {
				continue
			}
			held++
			out = append(out, f.manifestIssues(name, c.Digest, c.Size, depth+1)...)
		}
		if held == 0 {
			out = append(out, fmt.Sprintf("index %s: the store holds none of its %d images", d, len(m.Manifests)))
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
	var cfg configJSON
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
