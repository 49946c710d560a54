package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
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
	type span struct{ start, end int64 }
	var spans []span
	var names []string
	for i, e := range ix.Entries {
		if !indexWants(e.Name, want) {
			continue
		}
		end := ix.End
		if i+1 < len(ix.Entries) {
			end = ix.Entries[i+1].Start
		}
		spans = append(spans, span{e.Start, end})
		names = append(names, e.Name)
	}
	starts := make([]int64, len(ix.Members))
	coffs := make([]int64, len(ix.Members))
	var u, c int64
	for i, m := range ix.Members {
		starts[i], coffs[i] = u, c
		u += m.Size
		c += m.CSize
	}
	need := map[int]bool{}
	var needBytes int64
	for _, s := range spans {
		for k := memberAt(starts, s.start); k >= 0 && k < len(starts) && starts[k] < s.end; k++ {
			if !need[k] {
				need[k] = true
				needBytes += ix.Members[k].Size
			}
		}
	}
	if needBytes > maxIndexedInflate || needBytes*2 > u {
		return 0, fmt.Errorf("%w: the paths wanted fill %d of its %d bytes", ErrIndexUnusable, needBytes, u)
	}
	inflated, err := inflateMembers(ctx, r, ix, coffs, need)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%w: %w", ErrIndexUnusable, err)
	}
	read := func(s span) []byte {
		out := make([]byte, 0, s.end-s.start)
		for k := memberAt(starts, s.start); k < len(starts) && starts[k] < s.end; k++ {
			m := inflated[k]
			lo := max(s.start-starts[k], 0)
			hi := min(s.end-starts[k], int64(len(m)))
			out = append(out, m[lo:hi]...)
		}
		return out
	}
	frags := make([]io.Reader, len(spans))
	for i, s := range spans {
		b := read(s)
		if err := checkFragment(b, names[i]); err != nil {
			return 0, fmt.Errorf("%w: entry %q at %d: %w", ErrIndexUnusable, names[i], s.start, err)
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
	cr := &countReader{r: bytes.NewReader(b)}
	tr := tar.NewReader(cr)
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
	if _, err := tr.Next(); err != io.EOF {
		return fmt.Errorf("more than one entry where the index names %q", name)
	}
	if cr.n != int64(len(b)) {
		return fmt.Errorf("the entry takes %d bytes, the index says %d", cr.n, len(b))
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// inflateMembers inflates the members need names, in parallel, checking
// each has the size the index gives it.
func inflateMembers(ctx context.Context, r io.ReaderAt, ix *Index, coffs []int64, need map[int]bool) (map[int][]byte, error) {
	out := make(map[int][]byte, len(need))
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, memberWorkers())
	var wg sync.WaitGroup
	var dec *zstd.Decoder
	if ix.Compression == Zstd {
		var err error
		if dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(memberWorkers()), zstd.WithDecoderMaxMemory(maxMember)); err != nil {
			return nil, err
		}
		defer dec.Close()
	}
	for k := range need {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			m := ix.Members[k]
			b, err := inflateIndexed(io.NewSectionReader(r, coffs[k], m.CSize), m, dec)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("member %d of the layer: %w", k, err)
			}
			out[k] = b
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return out, firstErr
}

func inflateIndexed(sr *io.SectionReader, m Member, dec *zstd.Decoder) ([]byte, error) {
	if dec != nil {
		comp := make([]byte, m.CSize)
		if _, err := io.ReadFull(sr, comp); err != nil {
			return nil, err
		}
		b, err := dec.DecodeAll(comp, make([]byte, 0, m.Size))
		if err != nil {
			return nil, err
		}
		if int64(len(b)) != m.Size {
			return nil, fmt.Errorf("inflates to %d bytes, the index says %d", len(b), m.Size)
		}
		return b, nil
	}
	zr, err := gzip.NewReader(sr)
	if err != nil {
		return nil, err
	}
	zr.Multistream(false)
	b := make([]byte, m.Size)
	if _, err := io.ReadFull(zr, b); err != nil {
		return nil, err
	}
	if n, err := zr.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		return nil, fmt.Errorf("inflates to more than the %d bytes the index says", m.Size)
	}
	return b, nil
}
