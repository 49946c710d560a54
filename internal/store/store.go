// Package store is strata's local image store: an OCI image layout (blobs and
// index.json, readable by skopeo and umoci as `oci:ROOT:NAME`) plus the unpacked
// layers that overlayfs stacks as lowerdirs, and per-process work areas.
//
// Layout under the root:
//
//	oci-layout, index.json     OCI image layout; tagged manifests carry the
//	                           annotation org.opencontainers.image.ref.name,
//	                           an untagged (dangling) image has one entry without it
//	blobs/sha256/HEX           content-addressed blobs, verified before they are trusted
//	layers/HEX/                a layer (named by its diffID) unpacked in overlay lowerdir form;
//	                           for a cached layer of a stage no build exported yet,
//	                           the only copy (its blob is made when needed)
//	tmp/                       temp files, renamed into place when complete
//	run/PID-STARTTIME/         a process's mounts and runc bundles; removed on exit,
//	                           reclaimed by Reclaim (every strata command) when that
//	                           process died
//	runc/                      runc's state root
//	containers/NAME.lock       flocked while a `strata run --name NAME` runs
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

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-build/strata/internal/ctxio"
	"golang.org/x/sys/unix"
)

// RefNameAnnotation is the index.json annotation that names a tagged image.
const RefNameAnnotation = ocispec.AnnotationRefName

// Store is a local image store rooted at one directory. It is safe for use by
// several goroutines and by several processes at once.
type Store struct {
	root string
	// owner prefixes this process's temp names ("PID-STARTTIME."), so the
	// next strata can remove at once what a killed one left in tmp/; the
	// name is claimed (see claim.go) for the life of the process.
	owner string
	claim claim
}

// Open opens (creating if needed) the store at root.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("store root %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// Mount points are matched against /proc/self/mountinfo, which holds
	// resolved paths: keep the root without symlinks.
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{root: abs}
	for _, d := range []string{"blobs/sha256", "layers", "tmp", "run", "runc", "cache"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if s.claim, err = claimName(s.Path("run")); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.owner = s.claim.name + "."
	if err := s.initLayout(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// initLayout writes the OCI layout file and an empty index when missing.
func (s *Store) initLayout() error {
	layoutFile := s.Path(ocispec.ImageLayoutFile)
	if _, err := os.Stat(layoutFile); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := s.writeFileAtomic(layoutFile, b); err != nil {
			return err
		}
	}
	if _, err := os.Stat(s.indexPath()); errors.Is(err, fs.ErrNotExist) {
		if err := s.writeIndex(ocispec.Index{}); err != nil {
			return err
		}
	}
	return nil
}

// Close ends this process's claim on its temp names (a process that ends
// without Close leaves a lock file that the next Reclaim removes). Temp
// files must not be made after Close.
func (s *Store) Close() {
	s.claim.release(s.Path("run"))
	s.claim = claim{}
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

// Path joins elem onto the store root.
func (s *Store) Path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

// BlobPath returns the path of the blob d (which may not exist).
func (s *Store) BlobPath(d digest.Digest) string {
	return filepath.Join(s.root, "blobs", d.Algorithm().String(), d.Encoded())
}

// HasBlob reports whether the blob d is present.
func (s *Store) HasBlob(d digest.Digest) bool {
	_, err := os.Stat(s.BlobPath(d))
	return err == nil
}

// OpenBlob opens the blob d for reading.
func (s *Store) OpenBlob(d digest.Digest) (*os.File, error) {
	f, err := os.Open(s.BlobPath(d))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return f, nil
}

// ReadBlob reads the whole blob d (for manifests and configs).
func (s *Store) ReadBlob(d digest.Digest) ([]byte, error) {
	b, err := os.ReadFile(s.BlobPath(d))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if digest.FromBytes(b) != d {
		return nil, fmt.Errorf("blob %s: content does not match its digest", d)
	}
	return b, nil
}

// BlobWriter writes one blob to a temp file while hashing it; Commit moves it
// into place under its digest.
type BlobWriter struct {
	s    *Store
	f    *os.File
	h    digest.Digester
	size int64
	done bool
}

// NewBlobWriter starts a new blob.
func (s *Store) NewBlobWriter() (*BlobWriter, error) {
	f, err := os.CreateTemp(s.Path("tmp"), s.owner+"blob-")
	if err != nil {
		return nil, fmt.Errorf("new blob: %w", err)
	}
	return &BlobWriter{s: s, f: f, h: digest.Canonical.Digester()}, nil
}

// Write implements io.Writer.
func (w *BlobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if w.h != nil {
		w.h.Hash().Write(p[:n])
	}
	w.size += int64(n)
	return n, err
}

// Hashed says that the caller computes the digest of what it writes (and
// names it to Commit, which then takes it): the writer does not hash the
// bytes a second time. It must be called before the first Write.
func (w *BlobWriter) Hashed() { w.h = nil }

// Commit syncs the blob and moves it into place. When expected is not empty the
// content must match it.
func (w *BlobWriter) Commit(expected digest.Digest) (digest.Digest, int64, error) {
	defer w.Close()
	d := expected
	if w.h != nil {
		d = w.h.Digest()
	} else if err := expected.Validate(); err != nil {
		return "", 0, fmt.Errorf("commit blob: the writer's caller hashes it, but names no digest: %w", err)
	}
	if expected != "" && expected != d {
		return "", 0, fmt.Errorf("blob digest mismatch: want %s, got %s", expected, d)
	}
	// No fsync: rename makes the blob appear whole or not at all, which is
	// what a killed process needs; only a power loss could leave a blob
	// whose content is not yet on disk, and fsck finds it by its digest.
	if err := w.f.Close(); err != nil {
		return "", 0, fmt.Errorf("commit blob: %w", err)
	}
	if err := os.Rename(w.f.Name(), w.s.BlobPath(d)); err != nil {
		return "", 0, fmt.Errorf("commit blob: %w", err)
	}
	w.done = true
	return d, w.size, nil
}

// Close discards the blob unless it was committed.
func (w *BlobWriter) Close() error {
	if !w.done {
		w.done = true
		w.f.Close()
		return os.Remove(w.f.Name())
	}
	return nil
}

// WriteBlob stores the content of r; expected may be empty.
func (s *Store) WriteBlob(ctx context.Context, r io.Reader, expected digest.Digest) (digest.Digest, int64, error) {
	if expected != "" && s.HasBlob(expected) {
		return expected, s.blobSize(expected), nil
	}
	w, err := s.NewBlobWriter()
	if err != nil {
		return "", 0, err
	}
	defer w.Close()
	if _, err := io.Copy(w, ctxio.Reader(ctx, r)); err != nil {
		return "", 0, fmt.Errorf("write blob: %w", err)
	}
	return w.Commit(expected)
}

// PutBlob stores b and returns its digest.
func (s *Store) PutBlob(b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	if s.HasBlob(d) {
		return d, nil
	}
	if err := s.writeFileAtomic(s.BlobPath(d), b); err != nil {
		return "", err
	}
	return d, nil
}

func (s *Store) blobSize(d digest.Digest) int64 {
	fi, err := os.Stat(s.BlobPath(d))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// VerifyBlob re-hashes the blob d and reports whether it matches.
func (s *Store) VerifyBlob(d digest.Digest) error {
	f, err := s.OpenBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d.String() {
		return fmt.Errorf("blob %s: content hashes to %s", d, got)
	}
	return nil
}

func (s *Store) writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(s.Path("tmp"), s.owner+"file-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// lock takes an exclusive flock on ROOT/name for the duration of fn.
func (s *Store) lock(name string, fn func() error) error {
	f, err := os.OpenFile(s.Path(name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock store: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock store: %w", err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}
