// Package cache is strata's local build cache: a content-addressed index
// from step cache keys to the layers those steps produced, plus the inputs
// of the last build at each Dockerfile position, so a miss can say what
// changed.
//
// A key is a chain: each filesystem-changing step hashes its parent's key
// with everything that decides its result (the expanded instruction, the
// environment, user and working directory a RUN sees, the checksums of the
// files a COPY reads, the source stage's key or base image digest). Equal
// keys mean equal results, so a hit reuses the recorded layer.
//
// The parent of a step is the content of the filesystem it starts from
// (see After), not the steps that made it: a step that runs again and
// makes the same layer as before (a reproducible RUN, a COPY of files
// that did not change) leaves the same parent, so the unchanged steps
// after it still hit.
package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/strata-build/strata/internal/layer"
)

// Key identifies the filesystem state after a step.
type Key string

// Input is one named part of a step's key, kept for explaining misses.
type Input struct {
	Name  string `json:"name"`
	Value string `json:"value"` // a digest or short text
}

// NewKey hashes the parent key and the inputs (order matters) into a key.
func NewKey(parent Key, inputs ...Input) Key {
	h := sha256.New()
	write := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	write(string(parent))
	for _, in := range inputs {
		write(in.Name)
		write(in.Value)
	}
	return Key(hex.EncodeToString(h.Sum(nil)))
}

// Layer is a layer recorded for a key. A layer of a stage the build did not
// export is recorded without a blob (Digest, Size and MediaType empty): its
// unpacked directory (named by DiffID) is the only copy, and the blob is made
// from it when an image or a cache export first needs it (see Lazy).
type Layer struct {
	layer.Blob
	// Epoch is the SOURCE_DATE_EPOCH the layer's tar was made with (its
	// mtimes clamped to it), kept for a layer without a blob so that its
	// diffID can be checked again from the directory.
	Epoch *int64 `json:"epoch,omitempty"`
}

// Lazy reports whether the layer has no blob yet.
func (l *Layer) Lazy() bool { return l.Digest == "" }

// Record is what a step produced: a layer, or none for a step that changed
// nothing, and when.
type Record struct {
	Layer   *Layer    `json:"layer,omitempty"`
	Created time.Time `json:"created"`
	// Next, on an alias record (a step found by a cheap key, e.g. a COPY
	// --from=stage by the source stage's key), is the step's content key:
	// other layers recorded for the step are found under it.
	Next Key `json:"next,omitempty"`
}

// After returns the key of the filesystem after a step on parent that
// rec records: parent itself for a step that changed nothing, else parent
// with the layer's diffID. A base image starts the chain with its
// digest, scratch with "".
func After(parent Key, rec *Record) Key {
	if rec.Layer == nil {
		return parent
	}
	return NewKey(parent, Input{Name: "layer", Value: string(rec.Layer.DiffID)})
}

// Index is the cache index in a directory of the store.
type Index struct {
	dir string
}

// Open opens (creating) the index in dir.
func Open(dir string) (*Index, error) {
	for _, d := range []string{"keys", "last", "prefixes"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("open build cache: %w", err)
		}
	}
	return &Index{dir: dir}, nil
}

func (ix *Index) path(kind, name string) string {
	return filepath.Join(ix.dir, kind, name[:2], name)
}

// Get returns the record of key k.
func (ix *Index) Get(k Key) (*Record, bool) {
	var r Record
	if !ix.read(ix.path("keys", string(k)), &r) {
		return nil, false
	}
	return &r, true
}

// Put records r for key k.
func (ix *Index) Put(k Key, r *Record) error {
	return ix.write(ix.path("keys", string(k)), r)
}

// Delete forgets key k (e.g. when its layer was pruned).
func (ix *Index) Delete(k Key) {
	os.Remove(ix.path("keys", string(k)))
}

// Last returns the inputs recorded by the previous build at position pos
// (see Position).
func (ix *Index) Last(pos string) ([]Input, bool) {
	var in []Input
	return in, ix.read(ix.path("last", pos), &in)
}

// SetLast records the inputs of the step at position pos.
func (ix *Index) SetLast(pos string, in []Input) error {
	return ix.write(ix.path("last", pos), in)
}

// MarkPrefix records that a step whose key starts from prefix (a key made of
// everything but the content of its sources, see HasPrefix) has a record.
func (ix *Index) MarkPrefix(prefix Key) error {
	p := ix.path("prefixes", string(prefix))
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return ix.write(p, struct{}{})
}

// HasPrefix reports whether MarkPrefix was called for prefix: without the
// mark no record can match a step with that prefix (unless it was made by a
// strata that did not mark prefixes), so the step may do its work before
// its key is known and look the key up afterwards.
func (ix *Index) HasPrefix(prefix Key) bool {
	_, err := os.Stat(ix.path("prefixes", string(prefix)))
	return err == nil
}

// Position names a step of a Dockerfile for Last/SetLast.
func Position(dockerfile, stage string, step int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%d", dockerfile, stage, step)))
	return hex.EncodeToString(sum[:])
}

// Changed lists the names of inputs that differ between old and cur (added,
// removed or changed), sorted.
func Changed(old, cur []Input) []string {
	om := map[string]string{}
	for _, in := range old {
		om[in.Name] = in.Value
	}
	seen := map[string]bool{}
	var out []string
	for _, in := range cur {
		seen[in.Name] = true
		if v, ok := om[in.Name]; !ok || v != in.Value {
			out = append(out, in.Name)
		}
	}
	for _, in := range old {
		if !seen[in.Name] {
			out = append(out, in.Name)
		}
	}
	sort.Strings(out)
	return out
}

func (ix *Index) read(p string, v any) bool {
	b, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

func (ix *Index) write(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), tempPrefix)
	if err != nil {
		return fmt.Errorf("write build cache: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write build cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write build cache: %w", err)
	}
	return os.Rename(f.Name(), p)
}

// Entry is a record with its key and when it was last used.
type Entry struct {
	Key      Key
	Record   Record
	LastUsed time.Time
}

// Touch marks key k as used now (for least-recently-used pruning).
func (ix *Index) Touch(k Key) {
	now := time.Now()
	os.Chtimes(ix.path("keys", string(k)), now, now)
}

// Entries lists every record of the index.
func (ix *Index) Entries() ([]Entry, error) {
	var out []Entry
	root := filepath.Join(ix.dir, "keys")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || len(d.Name()) != 64 {
			return err
		}
		var r Record
		if !ix.read(p, &r) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		out = append(out, Entry{Key: Key(d.Name()), Record: r, LastUsed: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list build cache: %w", err)
	}
	return out, nil
}
