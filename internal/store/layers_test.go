package store

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// fakeUnpack writes the blob's content into dir/content and reports diffID.
func fakeUnpack(calls *atomic.Int32, diffID digest.Digest, delay time.Duration) UnpackFunc {
	return func(ctx context.Context, dir string, blob *os.File) (digest.Digest, error) {
		calls.Add(1)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return "", errors.New("unpack dir does not exist")
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			return "", errors.New("unpack dir is not empty")
		}
		b, err := io.ReadAll(blob)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, "content"), b, 0o644); err != nil {
			return "", err
		}
		time.Sleep(delay)
		return diffID, nil
	}
}

func TestEnsureLayer(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	blob, err := s.PutBlob([]byte("compressed layer"))
	if err != nil {
		t.Fatal(err)
	}
	diffID := digest.FromString("uncompressed layer")
	var calls atomic.Int32

	// diffID mismatch
	_, err = s.EnsureLayer(ctx, diffID, blob, fakeUnpack(&calls, digest.FromString("something else"), 0))
	if err == nil || !strings.Contains(err.Error(), diffID.String()) || !strings.Contains(err.Error(), digest.FromString("something else").String()) {
		t.Errorf("diffID mismatch: err = %v, want both diffIDs named", err)
	}
	if s.HasLayer(diffID) {
		t.Error("layer dir exists after a diffID mismatch")
	}
	if ents := dirEntries(t, s.Path("layers")); len(ents) != 0 {
		t.Errorf("layers/ = %v after a failure", ents)
	}
	if ents := dirEntries(t, s.Path("tmp")); len(ents) != 0 {
		t.Errorf("tmp/ = %v after a failure", ents)
	}

	// unpack error
	boom := errors.New("boom")
	_, err = s.EnsureLayer(ctx, diffID, blob, func(ctx context.Context, dir string, _ *os.File) (digest.Digest, error) {
		os.WriteFile(filepath.Join(dir, "partial"), []byte("x"), 0o644)
		return "", boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("unpack error not wrapped: %v", err)
	}
	if s.HasLayer(diffID) || len(dirEntries(t, s.Path("tmp"))) != 0 {
		t.Error("a failed unpack left files")
	}

	// missing blob: unpack is not called
	calls.Store(0)
	if _, err := s.EnsureLayer(ctx, digest.FromString("d2"), digest.FromString("no such blob"), fakeUnpack(&calls, digest.FromString("d2"), 0)); err == nil {
		t.Error("EnsureLayer with a missing blob succeeded")
	}
	if calls.Load() != 0 {
		t.Error("unpack called for a missing blob")
	}

	// success
	calls.Store(0)
	dir, err := s.EnsureLayer(ctx, diffID, blob, fakeUnpack(&calls, diffID, 0))
	if err != nil {
		t.Fatal(err)
	}
	if dir != s.LayerDir(diffID) || dir != filepath.Join(s.Root(), "layers", diffID.Encoded()) {
		t.Errorf("dir = %s", dir)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "content")); err != nil || string(b) != "compressed layer" {
		t.Errorf("layer content = %q %v", b, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("layer dir mode = %v %v, want 0755", fi.Mode().Perm(), err)
	}
	if !s.HasLayer(diffID) {
		t.Error("HasLayer false")
	}
	if ents := dirEntries(t, s.Path("tmp")); len(ents) != 0 {
		t.Errorf("tmp/ = %v", ents)
	}
	// second call: no unpack
	dir2, err := s.EnsureLayer(ctx, diffID, blob, fakeUnpack(&calls, diffID, 0))
	if err != nil || dir2 != dir {
		t.Errorf("second EnsureLayer = %s %v", dir2, err)
	}
	if calls.Load() != 1 {
		t.Errorf("unpack called %d times, want 1", calls.Load())
	}
}

func TestEnsureLayerConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	blob, _ := s.PutBlob([]byte("shared layer"))
	diffID := digest.FromString("shared diff")
	var calls atomic.Int32
	var wg sync.WaitGroup
	errs := make([]error, 8)
	dirs := make([]string, 8)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			dirs[i], errs[i] = s.EnsureLayer(ctx, diffID, blob, fakeUnpack(&calls, diffID, 20*time.Millisecond))
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
		if dirs[i] != s.LayerDir(diffID) {
			t.Errorf("goroutine %d: dir %s", i, dirs[i])
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.LayerDir(diffID), "content")); err != nil || string(b) != "shared layer" {
		t.Errorf("content %q %v", b, err)
	}
	if ents := dirEntries(t, s.LayerDir(diffID)); len(ents) != 1 {
		t.Errorf("layer dir holds %v (a losing extraction was nested inside?)", ents)
	}
	if ents := dirEntries(t, s.Path("tmp")); len(ents) != 0 {
		t.Errorf("tmp/ = %v: losing extractions not cleaned up", ents)
	}
}

func TestAdoptLayerDir(t *testing.T) {
	s := openStore(t)
	diffID := digest.FromString("adopted")
	mk := func(content string) string {
		d, err := os.MkdirTemp(s.Path("tmp"), "up-")
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "f"), []byte(content), 0o644)
		return d
	}
	first := mk("first")
	if err := s.AdoptLayerDir(diffID, first); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Error("source dir still exists")
	}
	second := mk("second")
	if err := s.AdoptLayerDir(diffID, second); err != nil {
		t.Fatalf("adopting an existing layer: %v", err)
	}
	if _, err := os.Stat(second); !os.IsNotExist(err) {
		t.Error("losing dir not removed")
	}
	if b, _ := os.ReadFile(filepath.Join(s.LayerDir(diffID), "f")); string(b) != "first" {
		t.Errorf("existing layer replaced: %q", b)
	}
	if err := s.AdoptLayerDir(digest.FromString("x"), filepath.Join(s.Path("tmp"), "does-not-exist")); err == nil {
		t.Error("adopting a missing dir succeeded")
	}
}
