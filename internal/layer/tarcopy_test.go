package layer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// gnuTar is the tar archive GNU tar makes of dir in format (gnu, posix):
// "./" names, long names in extra headers, a sparse file stored sparse,
// and zero blocks up to a whole record at the end.
func gnuTar(t *testing.T, dir, format string) []byte {
	t.Helper()
	out, err := exec.Command("tar", "--sparse", "--format="+format, "-C", dir, "-cf", "-", ".").Output()
	if err != nil {
		t.Fatalf("tar --format=%s: %v", format, err)
	}
	return out
}

// TestCompressIndexesTar: a tarball compressed as it is (strata import,
// strata load) keeps its bytes, is cut at its entries and gets an index
// that finds each entry, as a committed layer's does; reading one file
// through it gives that file.
func TestCompressIndexesTar(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	genTree(t, dir, 300, 10<<20)
	long := filepath.Join(dir, strings.Repeat("a-long-directory-name/", 6), "file")
	mustWrite(t, long, "at the end of a long name", 0o644)
	sparse, err := os.Create(filepath.Join(dir, "sparse"))
	must(t, err)
	_, err = sparse.WriteAt([]byte("data after a hole"), 6<<20)
	must(t, err)
	must(t, sparse.Close())
	must(t, os.Symlink("d00", filepath.Join(dir, "link")))
	for _, format := range []string{"gnu", "posix"} {
		tarBytes := gnuTar(t, dir, format)
		for _, c := range []Compression{Gzip, Zstd} {
			t.Run(format+"/"+string(c), func(t *testing.T) {
				var blob bytes.Buffer
				b, err := Compress(ctx, bytes.NewReader(tarBytes), &blob, c)
				must(t, err)
				if want := digest.FromBytes(tarBytes); b.DiffID != want {
					t.Errorf("diffID %s, want the tarball's digest %s", b.DiffID, want)
				}
				zr, err := Decompress(bytes.NewReader(blob.Bytes()))
				must(t, err)
				back, err := io.ReadAll(zr)
				must(t, err)
				if !bytes.Equal(back, tarBytes) {
					t.Fatal("the blob does not decompress to the tarball")
				}
				ix, err := ReadIndex(bytes.NewReader(blob.Bytes()), int64(blob.Len()))
				if err != nil {
					t.Fatalf("no index: %v", err)
				}
				checkIndexEntries(t, ix, tarBytes)
				if rest := tarBytes[ix.End:]; len(rest) < 1024 || !bytes.Equal(rest, make([]byte, len(rest))) {
					t.Errorf("after the last entry: %d bytes, not all zero; want the end of the archive", len(rest))
				}
				for _, rel := range []string{"d07/sub0/f00007.txt", strings.TrimPrefix(long, dir+"/"), "sparse"} {
					out := t.TempDir()
					n, err := ApplyIndexed(ctx, out, bytes.NewReader(blob.Bytes()), ix, func(p string) bool { return p == rel })
					if err != nil {
						t.Fatalf("%s through the index: %v", rel, err)
					}
					if n >= ix.End/2 {
						t.Errorf("%s: inflated %d of %d bytes", rel, n, ix.End)
					}
					got, err := os.ReadFile(filepath.Join(out, rel))
					must(t, err)
					want, err := os.ReadFile(filepath.Join(dir, rel))
					must(t, err)
					if !bytes.Equal(got, want) {
						t.Errorf("%s through the index: %d bytes, not the file's %d", rel, len(got), len(want))
					}
				}
			})
		}
	}
}

// TestCompressNotATar: bytes that stop reading as a tar (a truncated
// tarball, or none at all) are compressed as they are, without an index.
func TestCompressNotATar(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	genTree(t, dir, 100, 10<<20)
	tarBytes := gnuTar(t, dir, "gnu")
	noise := bytes.Repeat([]byte("not a tar header, "), 600_000)
	for name, in := range map[string][]byte{"truncated": tarBytes[:len(tarBytes)/2+100], "not a tar": noise} {
		var blob bytes.Buffer
		b, err := Compress(ctx, bytes.NewReader(in), &blob, Gzip)
		must(t, err)
		if b.DiffID != digest.FromBytes(in) {
			t.Errorf("%s: diffID %s is not the stream's digest", name, b.DiffID)
		}
		zr, err := Decompress(bytes.NewReader(blob.Bytes()))
		must(t, err)
		back, err := io.ReadAll(zr)
		must(t, err)
		if !bytes.Equal(back, in) {
			t.Errorf("%s: the blob does not decompress to the stream", name)
		}
		if _, err := ReadIndex(bytes.NewReader(blob.Bytes()), int64(blob.Len())); !errors.Is(err, ErrNoIndex) {
			t.Errorf("%s: ReadIndex gave %v, want ErrNoIndex", name, err)
		}
	}
}
