package snapshot_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/snapshot/native"
	"github.com/strata-build/strata/internal/snapshot/overlay"
)

// BenchmarkPrepareDiff measures one step on a 5000-file parent (50
// directories of 100 files of 4 KiB): Prepare, change ten files, Diff,
// Remove.
func BenchmarkPrepareDiff(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	parent := filepath.Join(b.TempDir(), "layer")
	data := make([]byte, 4096)
	for d := range 50 {
		dir := filepath.Join(parent, fmt.Sprint("d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 100 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprint("f", f)), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, impl := range []struct {
		name string
		new  func(dir string) snapshot.Snapshotter
	}{
		{"overlay", func(dir string) snapshot.Snapshotter { return overlay.New(dir) }},
		{"native", func(dir string) snapshot.Snapshotter { return native.New(dir) }},
	} {
		b.Run(impl.name, func(b *testing.B) {
			s := impl.new(b.TempDir())
			ctx := context.Background()
			for b.Loop() {
				sn, err := s.Prepare(ctx, []string{parent})
				if err != nil {
					b.Fatal(err)
				}
				for i := range 10 {
					if err := os.WriteFile(filepath.Join(sn.Root(), fmt.Sprint("d", i), "f0"), []byte("changed"), 0o644); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := sn.Diff(ctx); err != nil {
					b.Fatal(err)
				}
				if err := sn.Remove(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
