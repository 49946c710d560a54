package layer

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCommit commits a generated 2000-file, 50 MB directory; MB/s is of
// the file content.
func BenchmarkCommit(b *testing.B) {
	dir := b.TempDir()
	total := genTree(b, dir, 2000, 50<<20)
	for _, c := range []Compression{Gzip, Zstd, Uncompressed} {
		b.Run(string(c), func(b *testing.B) {
			b.SetBytes(total)
			var blob Blob
			for b.Loop() {
				var err error
				if blob, _, err = Commit(context.Background(), dir, io.Discard, c, DiffOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(blob.Size)/float64(total), "ratio")
		})
	}
}

// BenchmarkReadOneFile reads one file out of a committed 2000-file, 50 MB
// gzip layer held in memory: whole (ApplyFlat, what any layer gets) and
// through the layer's index (ApplyIndexed).
func BenchmarkReadOneFile(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	genTree(b, dir, 2000, 50<<20)
	var blob bytes.Buffer
	if _, _, err := Commit(ctx, dir, &blob, Gzip, DiffOptions{}); err != nil {
		b.Fatal(err)
	}
	r := bytes.NewReader(blob.Bytes())
	ix, err := ReadIndex(r, int64(blob.Len()))
	if err != nil {
		b.Fatal(err)
	}
	const name = "d25/sub4/f01075.txt"
	want := func(rel string) bool { return rel == "d25" || rel == "d25/sub4" || rel == name }
	check := func(dest string) {
		if _, err := os.Stat(filepath.Join(dest, name)); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("whole", func(b *testing.B) {
		for b.Loop() {
			dest := b.TempDir()
			if err := ApplyFlat(ctx, dest, bytes.NewReader(blob.Bytes()), want); err != nil {
				b.Fatal(err)
			}
			check(dest)
		}
	})
	b.Run("index", func(b *testing.B) {
		for b.Loop() {
			dest := b.TempDir()
			if _, err := ApplyIndexed(ctx, dest, r, ix, want); err != nil {
				b.Fatal(err)
			}
			check(dest)
		}
	})
}
