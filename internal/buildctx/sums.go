package buildctx

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
)

// Sums computes the content checksums of context files, remembering them
// with the file's stat data (size, mtime, ctime, inode) like git's index: a
// file whose stat data did not change is not read again.
type Sums struct {
	path string // where the stat cache is kept

	mu      sync.Mutex
	entries map[string]statEntry
	dirty   bool
	changed map[string]bool
}

type statEntry struct {
	Size  int64  `json:"s"`
	Mtime int64  `json:"m"`
	Ctime int64  `json:"c"`
	Ino   uint64 `json:"i"`
	Sum   string `json:"h"`
}

// OpenSums loads the stat cache kept in file (missing: empty).
func OpenSums(file string) *Sums {
	s := &Sums{path: file, entries: map[string]statEntry{}, changed: map[string]bool{}}
	if b, err := os.ReadFile(file); err == nil {
		_ = json.Unmarshal(b, &s.entries)
	}
	return s
}

func statOf(fi os.FileInfo) statEntry {
	e := statEntry{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Ctime = st.Ctim.Sec*1e9 + st.Ctim.Nsec
		e.Ino = st.Ino
	}
	return e
}

// FileSum returns the sha256 of the regular file at abs (fi is its Lstat).
func (s *Sums) FileSum(abs string, fi os.FileInfo) (string, error) {
	if sum, ok := s.Known(abs, fi); ok {
		return sum, nil
	}
	cur := statOf(fi)
	s.mu.Lock()
	old, ok := s.entries[abs]
	s.mu.Unlock()
	f, err := os.Open(abs)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum %s: %w", abs, err)
	}
	cur.Sum = hex.EncodeToString(h.Sum(nil))
	s.mu.Lock()
	if ok && old.Sum != cur.Sum {
		s.changed[abs] = true
	}
	s.entries[abs] = cur
	s.dirty = true
	s.mu.Unlock()
	return cur.Sum, nil
}

// Known returns the checksum the stat cache holds for the file at abs when
// its stat data is still fi's (so the file was not changed since it was
// hashed), without reading the file.
func (s *Sums) Known(abs string, fi os.FileInfo) (string, bool) {
	cur := statOf(fi)
	s.mu.Lock()
	old, ok := s.entries[abs]
	s.mu.Unlock()
	if !ok || old.Size != cur.Size || old.Mtime != cur.Mtime || old.Ctime != cur.Ctime || old.Ino != cur.Ino {
		return "", false
	}
	return old.Sum, true
}

// Unchanged reports whether before and after, two stat results of one
// file, say it was not changed in between (the stat data the cache keys
// on is the same).
func Unchanged(before, after os.FileInfo) bool { return statOf(before) == statOf(after) }

// Record remembers sum, computed by the caller while it read the file at
// abs, as that file's checksum. before is the file's stat data before the
// read and after its fstat once read: when they differ the file changed
// while it was read, and nothing is recorded (FileSum reads it again).
func (s *Sums) Record(abs string, before, after os.FileInfo, sum string) {
	cur, end := statOf(before), statOf(after)
	if cur != end {
		return
	}
	cur.Sum = sum
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.entries[abs]; ok && old.Sum != sum {
		s.changed[abs] = true
	}
	s.entries[abs] = cur
	s.dirty = true
}

// Changed lists the files whose content differs from what the stat cache
// remembered, for explaining cache misses.
func (s *Sums) Changed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.changed))
	for p := range s.changed {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Save writes the stat cache back when it changed.
func (s *Sums) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return nil
	}
	b, err := json.Marshal(s.entries)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(s.path), ".stat-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	s.dirty = false
	return os.Rename(f.Name(), s.path)
}
