package layer

import (
	"context"
	"io"
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
