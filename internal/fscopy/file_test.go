package fscopy

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// CopyFile copies a sparse file extent by extent: the copy takes the disk
// its data takes, not its size, and reads back the same.
func TestCopyFileSparse(t *testing.T) {
	const size = 8 << 30
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1 << 30, size - 5} {
		if _, err := f.WriteAt([]byte("data!"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	start := time.Now()
	if err := CopyFile(src, filepath.Join(dir, "dst")); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "dst"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.Blocks*512 > 1<<20 {
		t.Errorf("copy of an %d-byte sparse file: size %d, %d bytes of disk (in %s)", int64(size), st.Size, st.Blocks*512, took)
	}
	g, err := os.Open(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, off := range []int64{0, 1 << 30, size - 5} {
		b := make([]byte, 6)
		n, _ := g.ReadAt(b, off)
		if string(b[:5]) != "data!" || (off != size-5 && b[5] != 0) || (off == size-5 && n != 5) {
			t.Errorf("at %d: %q", off, b[:n])
		}
	}
}
