package buildctx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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
	Size  int64
	Mtime int64
	Ctime int64
	Ino   uint64
	Sum   string
}

// sumsHeader starts a stat cache file. The records that follow are
// "SIZE MTIME CTIME INO SUM PATH" each ended by a NUL byte (a path holds
// any byte but NUL): tens of thousands of them are read and written in a
// few milliseconds, where JSON took tens (a large context's no-op build
// spent most of its time there).
const sumsHeader = "strata stat cache v2\n"

// OpenSums loads the stat cache kept in file (missing or unreadable:
// empty).
func OpenSums(file string) *Sums {
	s := &Sums{path: file, entries: map[string]statEntry{}, changed: map[string]bool{}}
	if b, err := os.ReadFile(file); err == nil {
		s.entries = decodeSums(b)
	}
	return s
}

// decodeSums reads a stat cache file; what does not parse is left out.
func decodeSums(b []byte) map[string]statEntry {
	out := map[string]statEntry{}
	rest, ok := bytes.CutPrefix(b, []byte(sumsHeader))
	if !ok {
		return out
	}
	for len(rest) > 0 {
		rec, next, found := bytes.Cut(rest, []byte{0})
		if !found {
			break
		}
		rest = next
		f := strings.SplitN(string(rec), " ", 6)
		if len(f) != 6 {
			continue
		}
		var e statEntry
		var err1, err2, err3, err4 error
		e.Size, err1 = strconv.ParseInt(f[0], 10, 64)
		e.Mtime, err2 = strconv.ParseInt(f[1], 10, 64)
		e.Ctime, err3 = strconv.ParseInt(f[2], 10, 64)
		e.Ino, err4 = strconv.ParseUint(f[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || f[4] == "" {
			continue
		}
		e.Sum = f[4]
		out[f[5]] = e
	}
	return out
}

// encodeSums is the stat cache file of entries (see sumsHeader).
func encodeSums(entries map[string]statEntry) []byte {
	b := make([]byte, 0, len(entries)*160+len(sumsHeader))
	b = append(b, sumsHeader...)
	for p, e := range entries {
		if e.Sum == "" || strings.ContainsAny(e.Sum, " \x00") || strings.ContainsRune(p, 0) {
			continue
		}
		b = strconv.AppendInt(b, e.Size, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, e.Mtime, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, e.Ctime, 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, e.Ino, 10)
		b = append(b, ' ')
		b = append(b, e.Sum...)
		b = append(b, ' ')
		b = append(b, p...)
		b = append(b, 0)
	}
	return b
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
	f, err := os.Open(abs)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum %s: %w", abs, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	s.Record(abs, fi, fi, sum) // fi as it was when the key asked: one record path
	return sum, nil
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
	b := encodeSums(s.entries)
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
