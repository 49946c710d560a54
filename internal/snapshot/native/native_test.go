package native_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/snapshot/native"
	"github.com/strata-build/strata/internal/snapshot/testsuite"
	"golang.org/x/sys/unix"
)

func TestSnapshotter(t *testing.T) {
	testsuite.Run(t, func(t *testing.T, dir string) snapshot.Snapshotter { return native.New(dir) })
}

// Names linked in a layer are one file in a native snapshot, as they are
// in the layer: a change in place through one name shows through the
// other, and the diff holds both (overlayfs would copy up only the name
// written, and leave the other as it was).
func TestLinkedNamesChangeTogether(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	lower := filepath.Join(tmp, "lower")
	must(t, os.MkdirAll(lower, 0o755))
	must(t, os.WriteFile(filepath.Join(lower, "a"), []byte("one"), 0o644))
	must(t, os.Link(filepath.Join(lower, "a"), filepath.Join(lower, "b")))
	dir := filepath.Join(tmp, "snaps")
	must(t, os.Mkdir(dir, 0o700))

	sn, err := native.New(dir).Prepare(ctx, []string{lower, t.TempDir()})
	must(t, err)
	defer sn.Remove()
	f, err := os.OpenFile(filepath.Join(sn.Root(), "a"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString(" two")
	must(t, err)
	must(t, f.Close())
	if b, _ := os.ReadFile(filepath.Join(sn.Root(), "b")); string(b) != "one two" {
		t.Errorf("b = %q, want the change made through a", b)
	}
	if b, _ := os.ReadFile(filepath.Join(lower, "a")); string(b) != "one" {
		t.Errorf("the parent changed: %q", b)
	}
	diff, err := sn.Diff(ctx)
	must(t, err)
	var sa, sb unix.Stat_t
	must(t, unix.Lstat(filepath.Join(diff, "a"), &sa))
	must(t, unix.Lstat(filepath.Join(diff, "b"), &sb))
	if sa.Ino != sb.Ino {
		t.Error("a and b are not one file in the diff")
	}
	must(t, sn.Remove())
}

// Prepare copies files (a RUN may change them in place); a view links them.
func TestViewLinksPrepareCopies(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	l1, l2 := filepath.Join(tmp, "l1"), filepath.Join(tmp, "l2")
	must(t, os.MkdirAll(l1, 0o755))
	must(t, os.MkdirAll(l2, 0o755))
	must(t, os.WriteFile(filepath.Join(l1, "f"), []byte("f"), 0o644))
	dir := filepath.Join(tmp, "snaps")
	must(t, os.Mkdir(dir, 0o700))
	s := native.New(dir)
	var lower unix.Stat_t
	must(t, unix.Lstat(filepath.Join(l1, "f"), &lower))

	v, err := s.View(ctx, []string{l1, l2})
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(v.Root(), "f"), &st))
	if st.Ino != lower.Ino {
		t.Error("the view's file is not a link to the layer's")
	}
	must(t, v.Remove())

	sn, err := s.Prepare(ctx, []string{l1, l2})
	must(t, err)
	must(t, unix.Lstat(filepath.Join(sn.Root(), "f"), &st))
	if st.Ino == lower.Ino {
		t.Error("the snapshot's file is the layer's")
	}
	must(t, sn.Remove())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
