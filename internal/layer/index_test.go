package layer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/flate"
	"golang.org/x/sys/unix"
)

// indexedLayer commits dir with c and returns the blob and its tar.
func indexedLayer(t *testing.T, dir string, c Compression) (blob, tarBytes []byte) {
	t.Helper()
	ctx := context.Background()
	var tb, b bytes.Buffer
	must(t, WriteDiff(ctx, dir, &tb, DiffOptions{}))
	_, m, err := Commit(ctx, dir, &b, c, DiffOptions{})
	must(t, err)
	if _, err := ReadIndex(bytes.NewReader(b.Bytes()), int64(b.Len())); err != nil {
		t.Fatalf("no index in a layer of %d members: %v", len(m.List), err)
	}
	return b.Bytes(), tb.Bytes()
}

// TestIndexMatchesTar: the index lists every entry of the layer's tar, in
// order, where it starts, and the members as Commit cut them; the blob
// still reads as the same tar with every reader.
func TestIndexMatchesTar(t *testing.T) {
	dir := t.TempDir()
	genTree(t, dir, 300, 10<<20)
	for _, c := range []Compression{Gzip, Zstd} {
		t.Run(string(c), func(t *testing.T) {
			blob, tarBytes := indexedLayer(t, dir, c)
			ix, err := ReadIndex(bytes.NewReader(blob), int64(len(blob)))
			must(t, err)
			if ix.Compression != c {
				t.Errorf("index of a %s blob says %s", c, ix.Compression)
			}
			checkIndexEntries(t, ix, tarBytes)
			if rest := tarBytes[ix.End:]; len(rest) != 1024 || !bytes.Equal(rest, make([]byte, 1024)) {
				t.Errorf("%d bytes after the last entry, want the 1024 zero bytes of the end of the archive", len(rest))
			}
			zr, err := Decompress(bytes.NewReader(blob))
			must(t, err)
			back, err := io.ReadAll(zr)
			must(t, err)
			if !bytes.Equal(back, tarBytes) {
				t.Error("the indexed blob does not decompress to the layer's tar")
			}
		})
	}
}

// checkIndexEntries checks that ix lists every entry of tarBytes, in
// order, each where it starts and with nothing between them.
func checkIndexEntries(t *testing.T, ix *Index, tarBytes []byte) {
	t.Helper()
	_, hdrs := readTar(t, tarBytes)
	if len(ix.Entries) != len(hdrs) {
		t.Fatalf("%d index entries for %d tar entries", len(ix.Entries), len(hdrs))
	}
	if len(ix.Entries) > 0 && ix.Entries[0].Start != 0 {
		t.Fatalf("the first entry starts at %d", ix.Entries[0].Start)
	}
	for i, e := range ix.Entries {
		end := ix.End
		if i+1 < len(ix.Entries) {
			end = ix.Entries[i+1].Start
		}
		if e.Name != hdrs[i].Name || e.Typeflag != hdrs[i].Typeflag {
			t.Fatalf("entry %d: index %q %c, tar %q %c", i, e.Name, e.Typeflag, hdrs[i].Name, hdrs[i].Typeflag)
		}
		if err := checkFragment(tarBytes[e.Start:end], e.Name); err != nil {
			t.Fatalf("entry %d %q: %v", i, e.Name, err)
		}
	}
}

// Layers without an index: one member (most RUN steps), and bytes that
// only look like one (see TestCompressNotATar for streams that are not
// tars).
func TestNoIndex(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "small"), "a small layer", 0o644)
	var small bytes.Buffer
	sb, m, err := Commit(ctx, dir, &small, Gzip, DiffOptions{})
	must(t, err)
	if len(m.List) != 1 || m.List[0].CSize != sb.Size {
		t.Errorf("a one-member layer: members %+v, blob of %d bytes (an index after them?)", m.List, sb.Size)
	}
	big := t.TempDir()
	genTree(t, big, 50, 6<<20)
	for name, b := range map[string][]byte{"one member": small.Bytes(), "empty": nil} {
		if _, err := ReadIndex(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrNoIndex) {
			t.Errorf("%s: ReadIndex gave %v, want ErrNoIndex", name, err)
		}
	}
	// a damaged index is an error, not an index
	blob, _ := indexedLayer(t, big, Gzip)
	ix, err := ReadIndex(bytes.NewReader(blob), int64(len(blob)))
	must(t, err)
	var off int64
	for _, m := range ix.Members {
		off += m.CSize
	}
	bad := bytes.Clone(blob)
	bad[off+20] ^= 0x40 // inside the first index piece
	if _, err := ReadIndex(bytes.NewReader(bad), int64(len(bad))); err == nil || errors.Is(err, ErrNoIndex) {
		t.Errorf("damaged index: %v", err)
	}
}

// TestApplyIndexed: reading some paths through the index gives the tree
// ApplyFlat gives from the whole layer, over a lower layer, with
// whiteouts, an opaque directory, symlinks and hard links.
func TestApplyIndexed(t *testing.T) {
	requireRoot(t) // whiteouts are 0/0 character devices in a diff
	ctx := context.Background()
	lower := t.TempDir()
	for _, p := range []string{"usr/bin/old", "usr/bin/gone", "opq/keep-not", "etc/conf"} {
		mustWrite(t, filepath.Join(lower, p), "lower "+p, 0o644)
	}
	top := t.TempDir()
	genTree(t, top, 200, 8<<20)
	mustWrite(t, filepath.Join(top, "usr/bin/tool"), "the tool", 0o755)
	mustWrite(t, filepath.Join(top, "usr/bin/zz-late"), strings.Repeat("late ", 1<<18), 0o644)
	must(t, os.Symlink("tool", filepath.Join(top, "usr/bin/link")))
	must(t, os.Link(filepath.Join(top, "usr/bin/tool"), filepath.Join(top, "usr/bin/hard")))
	must(t, unix.Mknod(filepath.Join(top, "usr/bin/gone"), unix.S_IFCHR, 0))
	must(t, os.MkdirAll(filepath.Join(top, "opq"), 0o755))
	must(t, unix.Setxattr(filepath.Join(top, "opq"), "trusted.overlay.opaque", []byte("y"), 0))
	mustWrite(t, filepath.Join(top, "opq/new"), "new in opq", 0o644)

	var lowerBlob bytes.Buffer
	_, _, err := Commit(ctx, lower, &lowerBlob, Gzip, DiffOptions{})
	must(t, err)
	for _, c := range []Compression{Gzip, Zstd} {
		blob, _ := indexedLayer(t, top, c)
		ix, err := ReadIndex(bytes.NewReader(blob), int64(len(blob)))
		must(t, err)
		for _, pats := range [][]string{
			{"usr/bin/tool"},
			{"usr/bin"},
			{"usr/bin/*"},
			{"opq"},
			{"d07/sub0"},
			{"usr/bin/hard", "usr/bin/tool"},
		} {
			want := func(rel string) bool {
				parts := strings.Split(rel, "/")
				for _, p := range pats {
					pp := strings.Split(p, "/")
					ok := true
					for i := 0; i < min(len(parts), len(pp)); i++ {
						if m, _ := path.Match(pp[i], parts[i]); !m {
							ok = false
							break
						}
					}
					if ok {
						return true
					}
				}
				return false
			}
			whole, byIndex := t.TempDir(), t.TempDir()
			for _, d := range []string{whole, byIndex} {
				must(t, ApplyFlat(ctx, d, bytes.NewReader(lowerBlob.Bytes()), want))
			}
			errWhole := ApplyFlat(ctx, whole, bytes.NewReader(blob), want)
			_, errIndex := ApplyIndexed(ctx, byIndex, bytes.NewReader(blob), ix, want)
			if errWhole != nil || errIndex != nil {
				// a hard link to a path not wanted: the same refusal
				if !errors.Is(errWhole, ErrMissingLinkTarget) || !errors.Is(errIndex, ErrMissingLinkTarget) {
					t.Errorf("%s %v: whole layer: %v; through the index: %v", c, pats, errWhole, errIndex)
				}
				continue
			}
			if d := diffSnapshots(snapshotTree(t, whole), snapshotTree(t, byIndex)); len(d) > 0 {
				t.Errorf("%s %v: through the index differs from the whole layer:\n%s", c, pats, strings.Join(d, "\n"))
			}
		}
		// most of the layer wanted: read it whole
		_, err = ApplyIndexed(ctx, t.TempDir(), bytes.NewReader(blob), ix, func(string) bool { return true })
		if !errors.Is(err, ErrIndexUnusable) {
			t.Errorf("%s: everything through the index: %v", c, err)
		}
	}
}

// TestApplyIndexedChecksEntries: an index that names another entry where
// the tar has one is refused before anything is written.
func TestApplyIndexedChecksEntries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	genTree(t, dir, 100, 6<<20)
	blob, _ := indexedLayer(t, dir, Gzip)
	ix, err := ReadIndex(bytes.NewReader(blob), int64(len(blob)))
	must(t, err)
	// the index now says the 40th entry is "evil", and "evil" is wanted
	ix.Entries[40].Name = "evil"
	dest := t.TempDir()
	_, err = ApplyIndexed(ctx, dest, bytes.NewReader(blob), ix, func(rel string) bool { return rel == "evil" })
	if !errors.Is(err, ErrIndexUnusable) {
		t.Fatalf("a lying index: %v", err)
	}
	if names, _ := os.ReadDir(dest); len(names) != 0 {
		t.Errorf("a refused index wrote %d entries", len(names))
	}
}

// FuzzIndex: a hostile index (a registry's layer) decodes to an error or to
// an index whose members fill the blob and whose entries are in order
// inside the tar, and never panics; ReadIndex of any bytes neither.
func FuzzIndex(f *testing.F) {
	members := []Member{{Size: 3 << 20, CSize: 1 << 20}, {Size: 1 << 20, CSize: 300 << 10}}
	entries := []IndexEntry{{Name: "a", Typeflag: '5'}, {Name: "a/b", Typeflag: '0', Start: 512}, {Name: "a/c", Typeflag: '1', Start: 3 << 20}}
	payload, err := encodeIndex(members, entries, 4<<20-1024)
	if err != nil {
		f.Fatal(err)
	}
	raw, err := io.ReadAll(flate.NewReader(bytes.NewReader(payload)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw, int64(1<<20+300<<10))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1}, int64(1<<40))
	f.Fuzz(func(t *testing.T, raw []byte, off int64) {
		var b bytes.Buffer
		fw, _ := flate.NewWriter(&b, 1)
		fw.Write(raw)
		fw.Close()
		ix, err := decodeIndex(b.Bytes(), off)
		if err == nil {
			var c, u int64
			for _, m := range ix.Members {
				c += m.CSize
				u += m.Size
			}
			if c != off || ix.End > u {
				t.Fatalf("members %d/%d for a blob of %d, end %d", c, u, off, ix.End)
			}
			for i, e := range ix.Entries {
				if e.Start%512 != 0 || e.Start >= ix.End || i > 0 && e.Start <= ix.Entries[i-1].Start {
					t.Fatalf("entry %d starts at %d", i, e.Start)
				}
			}
		}
		tail := append(bytes.Clone(raw), indexTrailer(Gzip, b.Bytes(), int64(len(raw)))...)
		ReadIndex(bytes.NewReader(tail), int64(len(tail)))
	})
}
