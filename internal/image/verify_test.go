package image

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/store"
)

// OpenVerified passes an intact blob through (to its end, or to its size
// exactly as a chunked reader stops) and fails a damaged, truncated or
// longer one with the blob's name and the fsck hint.
func TestOpenVerified(t *testing.T) {
	s, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	content := []byte(strings.Repeat("layer bytes ", 5000))
	d, err := s.PutBlob(content)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(content))
	read := func(limit bool) error {
		rc, err := OpenVerified(s, d, size)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var r io.Reader = rc
		if limit {
			r = io.LimitReader(rc, size)
		}
		_, err = io.Copy(io.Discard, r)
		return err
	}
	if err := read(false); err != nil {
		t.Fatalf("intact blob: %v", err)
	}
	if err := read(true); err != nil {
		t.Fatalf("intact blob read to its size: %v", err)
	}
	for name, damage := range map[string]func([]byte) []byte{
		"flipped":   func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"truncated": func(b []byte) []byte { return b[:len(b)-10] },
		"longer":    func(b []byte) []byte { return append(b, 'x') },
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(s.BlobPath(d), damage(append([]byte(nil), content...)), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, limit := range []bool{false, true} {
				if limit && name == "longer" {
					continue // its first size bytes, all a chunked reader takes, are the blob
				}
				err := read(limit)
				if err == nil || !strings.Contains(err.Error(), d.String()) || !strings.Contains(err.Error(), "strata fsck --repair") {
					t.Errorf("read (limited %v): %v", limit, err)
				}
			}
		})
	}
}
