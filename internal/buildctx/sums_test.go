package buildctx

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestSumsRecord: a checksum recorded by a reader is what FileSum returns
// without reading the file; a file that
// changed between the stat before and the stat after the read is not
// recorded; a changed sum is reported by Changed; Save and OpenSums keep it.
func TestSumsRecord(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Lstat(p)
	s := OpenSums(filepath.Join(dir, "stat.json"))
	if sum, err := OpenSums(filepath.Join(dir, "other.json")).FileSum(p, before); err != nil || sum != sha([]byte("one")) {
		t.Fatalf("an empty cache's FileSum = %q, %v; want the file's sha256", sum, err)
	}
	s.Record(p, before, before, "recorded")
	// "recorded" is not the file's sha256: FileSum returning it proves it
	// did not read the file.
	if sum, err := s.FileSum(p, before); err != nil || sum != "recorded" {
		t.Fatalf("FileSum = %q, %v; want the recorded sum, without reading", sum, err)
	}

	// Changed while read: the stat after differs, nothing recorded.
	q := filepath.Join(dir, "g")
	os.WriteFile(q, []byte("two"), 0o644)
	qb, _ := os.Lstat(q)
	later := time.Now().Add(time.Hour)
	os.Chtimes(q, later, later)
	qa, _ := os.Lstat(q)
	s.Record(q, qb, qa, "torn")
	if sum, _ := s.FileSum(q, qb); sum == "torn" {
		t.Fatal("a file that changed while read was recorded")
	}
	if sum, err := s.FileSum(q, qa); err != nil || sum != sha([]byte("two")) {
		t.Fatalf("FileSum after a torn record = %q, %v", sum, err)
	}

	// A new sum for a known path counts as a change.
	os.WriteFile(p, []byte("three!"), 0o644)
	after, _ := os.Lstat(p)
	s.Record(p, after, after, "saved")
	if ch := s.Changed(); len(ch) != 1 || ch[0] != p {
		t.Fatalf("Changed = %v, want [%s]", ch, p)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if sum, _ := OpenSums(filepath.Join(dir, "stat.json")).FileSum(p, after); sum != "saved" {
		t.Fatalf("reopened cache: FileSum = %q, want the recorded sum", sum)
	}
}

// TestSumsFile: the stat cache file keeps every entry, whatever bytes its
// path holds (spaces, newlines), and a file that does not parse reads as
// an empty cache.
func TestSumsFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "stat")
	entries := map[string]statEntry{
		"/ctx/plain":             {Size: 1, Mtime: 2, Ctime: 3, Ino: 4, Sum: "aa"},
		"/ctx/with space":        {Size: 5, Mtime: -6, Ctime: 7, Ino: 1 << 63, Sum: "bb"},
		"/ctx/new\nline \x01odd": {Size: 0, Mtime: 0, Ctime: 0, Ino: 0, Sum: "cc"},
	}
	s := OpenSums(file)
	s.entries, s.dirty = entries, true
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	got := OpenSums(file).entries
	if len(got) != len(entries) {
		t.Fatalf("read back %d entries, want %d: %v", len(got), len(entries), got)
	}
	for p, e := range entries {
		if got[p] != e {
			t.Errorf("%q: read back %+v, want %+v", p, got[p], e)
		}
	}
	for _, bad := range []string{"", "{\"a\":1}", sumsHeader + "1 2 3 x aa /p\x00", sumsHeader + "1 2 3 4 aa /torn"} {
		if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if n := len(OpenSums(file).entries); n != 0 {
			t.Errorf("%q read as %d entries", bad, n)
		}
	}
}
