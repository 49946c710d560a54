package layer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeSparse must give back exactly the bytes it was given, whatever the
// mix of zero and non-zero runs and however they fall on block boundaries.
func TestWriteSparseSameBytes(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := range 40 {
		var content []byte
		for range rng.Intn(12) {
			n := rng.Intn(3 * holeBlock)
			if rng.Intn(2) == 0 {
				content = append(content, make([]byte, n)...)
			} else {
				b := make([]byte, n)
				rng.Read(b)
				content = append(content, b...)
			}
		}
		p := filepath.Join(t.TempDir(), "f")
		f, err := os.Create(p)
		must(t, err)
		buf := make([]byte, 1+rng.Intn(5*holeBlock)) // any buffer size
		must(t, writeSparse(f, bytes.NewReader(content), buf))
		must(t, f.Close())
		got, err := os.ReadFile(p)
		must(t, err)
		if !bytes.Equal(got, content) {
			t.Fatalf("case %d: %d bytes back, want %d (or different content)", i, len(got), len(content))
		}
	}
}

// sparseTar makes, with GNU tar --sparse, an archive holding one file of
// size bytes that has only a few bytes of data in the middle.
func sparseTar(t *testing.T, size int64) []byte {
	t.Helper()
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("GNU tar not installed")
	}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "big"))
	must(t, err)
	_, err = f.WriteAt([]byte("in the middle"), size/2)
	must(t, err)
	must(t, f.Truncate(size))
	must(t, f.Close())
	out, err := exec.Command("tar", "--sparse", "--format=posix", "-C", dir, "-cf", "-", "big").Output()
	if err != nil {
		t.Fatalf("tar --sparse: %v", err)
	}
	if len(out) > 1<<20 {
		t.Fatalf("tar --sparse made %d bytes: not sparse", len(out))
	}
	return out
}

// A huge sparse file in a layer (the tar reader hands its holes over as
// zeros) is written sparse: the disk gets its data, not its size.
func TestApplySparseFileStaysSparse(t *testing.T) {
	requireRoot(t)
	const size = 16 << 30
	dir := t.TempDir()
	if _, err := Apply(context.Background(), dir, bytes.NewReader(sparseTar(t, size)), ApplyOptions{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "big"))
	must(t, err)
	if fi.Size() != size {
		t.Fatalf("size %d, want %d", fi.Size(), size)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used > 1<<20 {
		t.Errorf("a %d-byte sparse file takes %d bytes of disk", size, used)
	}
	f, err := os.Open(filepath.Join(dir, "big"))
	must(t, err)
	defer f.Close()
	b := make([]byte, 13)
	_, err = f.ReadAt(b, size/2)
	must(t, err)
	if string(b) != "in the middle" {
		t.Errorf("data at %d: %q", size/2, b)
	}
}

// MaxBytes bounds what a layer's files add up to, holes included, before the
// file that crosses it is written.
func TestApplyMaxBytes(t *testing.T) {
	requireRoot(t)
	const size = 4 << 30
	dir := t.TempDir()
	_, err := Apply(context.Background(), dir, bytes.NewReader(sparseTar(t, size)), ApplyOptions{MaxBytes: 1 << 30})
	if err == nil || !strings.Contains(err.Error(), "add up to more than 1073741824 bytes") {
		t.Fatalf("Apply with MaxBytes 1 GiB of a 4 GiB file: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "big")); !os.IsNotExist(err) {
		t.Errorf("the file over the bound was written (%v)", err)
	}
	// Under the bound it applies.
	dir2 := t.TempDir()
	if _, err := Apply(context.Background(), dir2, bytes.NewReader(sparseTar(t, size)), ApplyOptions{MaxBytes: size}); err != nil {
		t.Fatalf("Apply at exactly the bound: %v", err)
	}
}

// Unpack (ADD's extraction) takes the same byte bound as Apply: a small
// archive that expands past it is refused before the file is written, and
// the error names the bound and the caller's hint.
func TestUnpackMaxBytes(t *testing.T) {
	requireRoot(t)
	const size = 4 << 30
	dir := t.TempDir()
	err := Unpack(context.Background(), dir, bytes.NewReader(sparseTar(t, size)), nil, ApplyOptions{MaxBytes: 1 << 30, BoundHint: "raise it with X"})
	var be *BoundError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "add up to more than 1073741824 bytes (raise it with X)") {
		t.Fatalf("Unpack with MaxBytes 1 GiB of a 4 GiB file: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "big")); !os.IsNotExist(err) {
		t.Errorf("the file over the bound was written (%v)", err)
	}
}

// WriteDiff (a layer's commit) checks the byte bound before it reads a file:
// a huge sparse file fails at once instead of being read and compressed as
// zeros.
func TestWriteDiffMaxBytes(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "big"))
	must(t, err)
	must(t, f.Truncate(64<<30))
	must(t, f.Close())
	mustWrite(t, filepath.Join(dir, "small"), "x", 0o644)
	start := time.Now()
	err = WriteDiff(context.Background(), dir, io.Discard, DiffOptions{MaxBytes: 1 << 30})
	var be *BoundError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "big: the files add up to more than 1073741824 bytes") {
		t.Fatalf("WriteDiff of a 64 GiB sparse file with MaxBytes 1 GiB: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to fail", d)
	}
	must(t, os.Remove(filepath.Join(dir, "big")))
	must(t, WriteDiff(context.Background(), dir, io.Discard, DiffOptions{MaxBytes: 1}))
}

// Counter's Reader fails the read that crosses the bound.
func TestCounterReader(t *testing.T) {
	c := &Counter{Max: 10}
	n, err := io.Copy(io.Discard, c.Reader(bytes.NewReader(make([]byte, 10))))
	if n != 10 || err != nil {
		t.Fatalf("10 bytes under a bound of 10: %d, %v", n, err)
	}
	c = &Counter{Max: 10}
	_, err = io.Copy(io.Discard, c.Reader(strings.NewReader("eleven byte")))
	var be *BoundError
	if !errors.As(err, &be) || be.Max != 10 {
		t.Fatalf("11 bytes over a bound of 10: %v", err)
	}
}
