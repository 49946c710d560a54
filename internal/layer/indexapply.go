package layer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxIndexedInflate bounds what ApplyIndexed inflates into memory; a
// selection that needs more is told to read the whole layer.
const maxIndexedInflate = 64 << 20

// ErrIndexUnusable means ApplyIndexed wrote nothing and the layer is to be
// read whole (ApplyFlat): the paths wanted fill most of it, or the index
// does not match the blob.
var ErrIndexUnusable = errors.New("the layer's index cannot serve this read")

// ApplyIndexed is ApplyFlat for a blob with an index (ReadIndex): it
// inflates only the members that hold the entries want selects (and every
// whiteout), checks that each is the entry the index names, and applies
// them in order as ApplyFlat applies the whole layer. Nothing is written
// to dir before those checks pass: an error that wraps ErrIndexUnusable
// left dir as it was. It returns how many bytes of the tar it inflated.
func ApplyIndexed(ctx context.Context, dir string, r io.ReaderAt, ix *Index, want func(path string) bool) (int64, error) {
	starts := make([]int64, len(ix.Members)) // where each member starts in the tar
	var total int64
	for i, m := range ix.Members {
		starts[i] = total
		total += m.Size
	}
	// the entries ApplyFlat would act on, and the members holding them
	type span struct {
		start, end int64
		name       string
	}
	var spans []span
	need := make([]bool, len(ix.Members))
	var needBytes int64
	for i, e := range ix.Entries {
		if !indexWants(e.Name, want) {
			continue
		}
		end := ix.End
		if i+1 < len(ix.Entries) {
			end = ix.Entries[i+1].Start
		}
		spans = append(spans, span{e.Start, end, e.Name})
		for k := memberAt(starts, e.Start); k < len(need) && starts[k] < end; k++ {
			if !need[k] {
				need[k] = true
				needBytes += ix.Members[k].Size
			}
		}
	}
	if needBytes > maxIndexedInflate || needBytes*2 > total {
		return 0, fmt.Errorf("%w: the paths wanted fill %d of its %d bytes", ErrIndexUnusable, needBytes, total)
	}
	buf, at, err := inflateMembers(r, ix, need, needBytes)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%w: %w", ErrIndexUnusable, err)
	}
	// A span's members are all in buf, one after another: it is one slice.
	frags := make([]io.Reader, len(spans))
	for i, s := range spans {
		k := memberAt(starts, s.start)
		lo := at[k] + s.start - starts[k]
		b := buf[lo : lo+s.end-s.start]
		if err := checkFragment(b, s.name); err != nil {
			return 0, fmt.Errorf("%w: entry %q at %d: %w", ErrIndexUnusable, s.name, s.start, err)
		}
		frags[i] = bytes.NewReader(b)
	}
	x := &extractor{layer: true, flat: true, want: want, written: map[string]bool{}, noDigest: true, plain: true}
	_, err = x.run(ctx, dir, io.MultiReader(frags...))
	return needBytes, err
}

// indexWants reports whether ApplyFlat could act on an entry called name:
// a wanted path, any whiteout, or a name it would refuse (so that the
// refusal is the same).
func indexWants(name string, want func(string) bool) bool {
	rel, err := cleanEntryName(name, false)
	if err != nil {
		return true
	}
	if rel == "." {
		return false
	}
	_, base := splitRel(rel)
	return strings.HasPrefix(base, whiteoutPrefix) || want(rel)
}

// checkFragment checks that b is one whole tar entry called name: it
// reads as that entry (its extended headers, header and content), and
// then as the end of the stream.
func checkFragment(b []byte, name string) error {
	br := bytes.NewReader(b)
	tr := tar.NewReader(br)
	hdr, err := tr.Next()
	if err != nil {
		return err
	}
	if hdr.Name != name {
		return fmt.Errorf("the tar entry there is %q", hdr.Name)
	}
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return err
	}
	if _, err := tr.Next(); err != io.EOF || br.Len() != 0 {
		return fmt.Errorf("more than one entry where the index names %q", name)
	}
	return nil
}

// inflateMembers inflates the members need marks into one buffer of size
// bytes, in order, through Decompress (gzip members in parallel, as any
// layer); at[k] is where member k starts in it.
func inflateMembers(r io.ReaderAt, ix *Index, need []bool, size int64) (buf []byte, at []int64, err error) {
	var parts []io.Reader
	at = make([]int64, len(need))
	var coff, pos int64
	for k, m := range ix.Members {
		if need[k] {
			parts = append(parts, io.NewSectionReader(r, coff, m.CSize))
			at[k] = pos
			pos += m.Size
		}
		coff += m.CSize
	}
	// the format is the index's, not whatever the first bytes look like
	stream := bufio.NewReader(io.MultiReader(parts...))
	magic := map[Compression][]byte{Gzip: magicGzip, Zstd: magicZstd}[ix.Compression]
	if head, _ := stream.Peek(len(magic)); len(magic) == 0 || !bytes.Equal(head, magic) {
		return nil, nil, fmt.Errorf("the members are not %s", ix.Compression)
	}
	zr, err := Decompress(stream)
	if err != nil {
		return nil, nil, err
	}
	defer zr.Close()
	buf = make([]byte, size)
	if _, err := io.ReadFull(zr, buf); err != nil {
		return nil, nil, fmt.Errorf("inflate the members: %w", err)
	}
	if n, err := io.ReadFull(zr, make([]byte, 1)); n != 0 || err != io.EOF {
		return nil, nil, errors.New("the members inflate to more than the index says")
	}
	return buf, at, nil
}
