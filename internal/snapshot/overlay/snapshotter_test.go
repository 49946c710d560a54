package overlay_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/snapshot/overlay"
	"github.com/strata-build/strata/internal/snapshot/testsuite"
	"golang.org/x/sys/unix"
)

func TestSnapshotter(t *testing.T) {
	testsuite.Run(t, func(t *testing.T, dir string) snapshot.Snapshotter { return overlay.New(dir) })
}

// A view of several parents is a read-only mount: writes fail. (A view of
// one parent is the parent's directory and is read-only by contract only,
// as native's views are.)
func TestViewIsReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	tmp := t.TempDir()
	l1, l2, dir := filepath.Join(tmp, "l1"), filepath.Join(tmp, "l2"), filepath.Join(tmp, "snaps")
	for _, d := range []string{l1, l2, dir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(l1, "f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := overlay.New(dir).View(context.Background(), []string{l1, l2})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Remove()
	if err := os.WriteFile(filepath.Join(v.Root(), "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("create in a view: %v, want EROFS", err)
	}
	if err := os.WriteFile(filepath.Join(v.Root(), "f"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write in a view: %v, want EROFS", err)
	}
	if err := v.Remove(); err != nil {
		t.Fatal(err)
	}
}
