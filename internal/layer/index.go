package layer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/klauspost/compress/flate"
)

// A layer blob that Commit writes in more than one member ends with an
// index: where each tar entry starts, and the members' sizes. A reader that
// wants a few paths of the layer (COPY --from=IMAGE) inflates only the
// members that hold them instead of the whole layer.
//
// The index is invisible to every other reader. In a gzip blob it is a run
// of empty gzip members whose FEXTRA field (RFC 1952 2.3.1.1, subfield
// "SI") carries the index in pieces of at most 65531 bytes, then one empty
// footer member (subfield "SF") of a fixed size that says where the index
// starts. In a zstd blob it is two skippable frames (RFC 8878 3.1.2), the
// index and the footer. Readers inflate empty members and skip skippable
// frames, so the tar stream, and the diffID, are the same with or without
// it. The index lies inside the blob, so the blob's digest covers it.
//
// The index says what its writer says: a blob made to disagree with its
// own index reads one way through the index and another way whole, as an
// eStargz TOC can. ApplyIndexed checks that every entry it reads through
// the index is the entry the index names there.

// IndexEntry is one tar entry of an indexed layer.
type IndexEntry struct {
	Name     string // as in the tar header
	Typeflag byte
	Start    int64 // offset in the tar stream of its first header block
}

// Index is a layer blob's index.
type Index struct {
	Compression Compression
	Members     []Member // Size and CSize only
	Entries     []IndexEntry
	// End is where the last entry ends in the tar stream (the end-of-archive
	// blocks follow).
	End int64
}

const (
	indexMagic        = "strata.index.v1\x00"
	indexFooterData   = 16 + 8 + 8 + sha256.Size // magic (len(indexMagic)), offset, length, sha256
	gzipFooterLen     = gzipHeaderLen + 2 + 4 + indexFooterData + 2 + gzipTrailerLen
	zstdFooterLen     = 8 + indexFooterData
	maxExtraPiece     = 65535 - 4
	maxIndexBytes     = 64 << 20 // bounds an index's inflated size
	maxIndexPayload   = 16 << 20 // and its deflated size
	maxNameBytes      = 64 << 20 // and the bytes of its names
	maxMemberCSize    = 2 * maxMember
	zstdSkippableMark = 0x184D2A5E
)

// An index piece is an empty gzip member: this header (FEXTRA, no time,
// OS unknown), the FEXTRA field, then this end (an empty final deflate
// block, the CRC-32 and size of nothing).
const (
	extraMemberHead = "\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff"
	extraMemberEnd  = "\x03\x00" + "\x00\x00\x00\x00\x00\x00\x00\x00"
)

// ErrNoIndex means a blob has no index (see Index).
var ErrNoIndex = errors.New("layer has no index")

// indexBuilder collects a layer's entries as the member writer sees them.
type indexBuilder struct {
	entries []IndexEntry
	end     int64 // where the last entry ends
	ended   bool  // end is known: the index is complete
}

// encode returns the index's payload: its members and entries as varints,
// names sharing a prefix with the one before, deflated.
func encodeIndex(members []Member, entries []IndexEntry, end int64) ([]byte, error) {
	var raw []byte
	raw = binary.AppendUvarint(raw, uint64(len(members)))
	for _, m := range members {
		raw = binary.AppendUvarint(raw, uint64(m.Size))
		raw = binary.AppendUvarint(raw, uint64(m.CSize))
	}
	raw = binary.AppendUvarint(raw, uint64(end))
	raw = binary.AppendUvarint(raw, uint64(len(entries)))
	prev, prevStart := "", int64(0)
	for _, e := range entries {
		p := 0
		for p < len(prev) && p < len(e.Name) && prev[p] == e.Name[p] {
			p++
		}
		raw = binary.AppendUvarint(raw, uint64(p))
		raw = binary.AppendUvarint(raw, uint64(len(e.Name)-p))
		raw = append(raw, e.Name[p:]...)
		raw = append(raw, e.Typeflag)
		raw = binary.AppendUvarint(raw, uint64(e.Start-prevStart))
		prev, prevStart = e.Name, e.Start
	}
	var b bytes.Buffer
	fw, err := flate.NewWriter(&b, 5)
	if err != nil {
		return nil, err
	}
	if _, err := fw.Write(raw); err != nil {
		return nil, err
	}
	if err := fw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// decodeIndex decodes an index payload of a blob whose members take off
// bytes. The payload may be hostile (a registry's layer): every count,
// size and offset is checked against what a blob of that size can hold,
// so a small payload cannot ask for much memory.
func decodeIndex(payload []byte, off int64) (*Index, error) {
	raw, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(payload)), maxIndexBytes+1))
	if err != nil {
		return nil, fmt.Errorf("inflate index: %w", err)
	}
	if len(raw) > maxIndexBytes {
		return nil, errors.New("index too large")
	}
	d := &varintReader{b: raw}
	ix := &Index{}
	n := d.count()
	if n > uint64(off/9) { // a zstd frame takes at least 9 bytes, a gzip member 18
		d.fail("more members than the blob can hold")
	}
	var csize, usize int64
	for i := uint64(0); i < n && d.err == nil; i++ {
		m := Member{Size: d.int(), CSize: d.int()}
		if m.Size <= 0 || m.Size > maxMember || m.CSize <= 0 || m.CSize > maxMemberCSize || m.CSize > off-csize {
			d.fail("bad member size")
		}
		csize += m.CSize
		usize += m.Size
		ix.Members = append(ix.Members, m)
	}
	if d.err == nil && csize != off {
		d.fail("members do not fill the blob")
	}
	ix.End = d.int()
	if ix.End > usize {
		d.fail("entries end past the members")
	}
	n = d.count()
	if n > uint64(ix.End/tarBlockSize)+1 {
		d.fail("more entries than the tar can hold")
	}
	prev, prevStart, names := "", int64(0), 0
	for i := uint64(0); i < n && d.err == nil; i++ {
		p, k := d.int(), d.int()
		if d.err != nil {
			break
		}
		if p > int64(len(prev)) || k > int64(len(d.b)) || int64(names)+p+k > maxNameBytes {
			d.fail("bad name")
			break
		}
		name := prev[:p] + string(d.bytes(int(k)))
		names += len(name)
		tf := d.byte()
		delta := d.int()
		start := prevStart + delta
		if delta%tarBlockSize != 0 || i > 0 && delta == 0 || start >= ix.End {
			d.fail("bad entry offset")
		}
		ix.Entries = append(ix.Entries, IndexEntry{Name: name, Typeflag: tf, Start: start})
		prev, prevStart = name, start
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode index: %w", d.err)
	}
	return ix, nil
}

// varintReader reads what encodeIndex wrote; the first error sticks.
type varintReader struct {
	b   []byte
	err error
}

func (d *varintReader) fail(msg string) {
	if d.err == nil {
		d.err = errors.New(msg)
	}
}

func (d *varintReader) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("truncated")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *varintReader) int() int64 {
	v := d.uint()
	if v > 1<<62 {
		d.err = errors.New("value out of range")
		return 0
	}
	return int64(v)
}

// count reads a number of items that each take at least one byte.
func (d *varintReader) count() uint64 {
	v := d.uint()
	if v > uint64(len(d.b)) {
		d.err = errors.New("count out of range")
		return 0
	}
	return v
}

func (d *varintReader) bytes(n int) []byte {
	if d.err != nil || n > len(d.b) {
		d.err = errors.New("truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *varintReader) byte() byte {
	b := d.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// indexTrailer returns the bytes that end a blob of compression c whose
// index payload is payload and whose members end at offset off.
func indexTrailer(c Compression, payload []byte, off int64) []byte {
	footer := make([]byte, 0, indexFooterData)
	footer = append(footer, indexMagic...)
	footer = binary.LittleEndian.AppendUint64(footer, uint64(off))
	footer = binary.LittleEndian.AppendUint64(footer, uint64(len(payload)))
	sum := sha256.Sum256(payload)
	footer = append(footer, sum[:]...)
	var out []byte
	switch c {
	case Zstd:
		out = appendSkippable(out, payload)
		out = appendSkippable(out, footer)
	default:
		for len(payload) > 0 {
			n := min(len(payload), maxExtraPiece)
			out = appendExtraMember(out, 'I', payload[:n])
			payload = payload[n:]
		}
		out = appendExtraMember(out, 'F', footer)
	}
	return out
}

// appendExtraMember appends an empty gzip member whose FEXTRA field holds
// one subfield, 'S' id, of data.
func appendExtraMember(out []byte, id byte, data []byte) []byte {
	out = append(out, extraMemberHead...)
	out = binary.LittleEndian.AppendUint16(out, uint16(4+len(data)))
	out = append(out, 'S', id)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(data)))
	out = append(out, data...)
	return append(out, extraMemberEnd...)
}

func appendSkippable(out []byte, data []byte) []byte {
	out = binary.LittleEndian.AppendUint32(out, zstdSkippableMark)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(data)))
	return append(out, data...)
}

// ReadIndex reads the index of a layer blob of size bytes (see Index). It
// returns ErrNoIndex for a blob without one.
func ReadIndex(r io.ReaderAt, size int64) (*Index, error) {
	c, footer, footerLen, err := readFooter(r, size)
	if err != nil {
		return nil, err
	}
	off := int64(binary.LittleEndian.Uint64(footer))
	plen := int64(binary.LittleEndian.Uint64(footer[8:]))
	region := size - footerLen - off
	if off <= 0 || plen <= 0 || plen > maxIndexPayload || region < plen || region > plen+plen/maxExtraPiece*32+64 {
		return nil, errors.New("index: bad footer")
	}
	buf := make([]byte, region)
	if _, err := r.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	var payload []byte
	if c == Zstd {
		payload, buf = skippable(buf)
		if payload == nil || len(buf) != 0 {
			return nil, errors.New("index: bad frame")
		}
	} else {
		for len(buf) > 0 {
			var piece []byte
			piece, buf = extraMember(buf, 'I')
			if piece == nil {
				return nil, errors.New("index: bad member")
			}
			payload = append(payload, piece...)
		}
	}
	if int64(len(payload)) != plen || sha256.Sum256(payload) != [sha256.Size]byte(footer[16:]) {
		return nil, errors.New("index: checksum does not match")
	}
	ix, err := decodeIndex(payload, off)
	if err != nil {
		return nil, err
	}
	ix.Compression = c
	return ix, nil
}

// readFooter finds the footer at the end of a blob with an index: it
// returns the blob's compression, the footer's data after the magic
// (offset, length and sha256 of the index) and the footer's size.
func readFooter(r io.ReaderAt, size int64) (Compression, []byte, int64, error) {
	tail := make([]byte, min(size, gzipFooterLen)) // the longer footer
	if _, err := r.ReadAt(tail, size-int64(len(tail))); err != nil {
		return "", nil, 0, ErrNoIndex
	}
	footer := func(data, rest []byte) []byte {
		if len(rest) != 0 || len(data) != indexFooterData || !bytes.HasPrefix(data, []byte(indexMagic)) {
			return nil
		}
		return data[len(indexMagic):]
	}
	if len(tail) == gzipFooterLen {
		if f := footer(extraMember(tail, 'F')); f != nil {
			return Gzip, f, gzipFooterLen, nil
		}
	}
	if len(tail) >= zstdFooterLen {
		if f := footer(skippable(tail[len(tail)-zstdFooterLen:])); f != nil {
			return Zstd, f, zstdFooterLen, nil
		}
	}
	return "", nil, 0, ErrNoIndex
}

// extraMember parses an empty gzip member written by appendExtraMember with
// subfield id at the start of b and returns its data and what follows it
// (nil data if b does not start with one).
func extraMember(b []byte, id byte) (data, rest []byte) {
	if len(b) < 16 || string(b[:len(extraMemberHead)]) != extraMemberHead {
		return nil, b
	}
	xlen := int(binary.LittleEndian.Uint16(b[10:]))
	n := int(binary.LittleEndian.Uint16(b[14:]))
	if b[12] != 'S' || b[13] != id || xlen != n+4 || len(b) < 16+n+len(extraMemberEnd) {
		return nil, b
	}
	data, tail := b[16:16+n], b[16+n:]
	if string(tail[:len(extraMemberEnd)]) != extraMemberEnd {
		return nil, b
	}
	return data, tail[len(extraMemberEnd):]
}

// skippable parses a zstd skippable frame of strata's mark at the start of
// b and returns its data and what follows it.
func skippable(b []byte) (data, rest []byte) {
	if len(b) < 8 || binary.LittleEndian.Uint32(b) != zstdSkippableMark {
		return nil, b
	}
	n := int64(binary.LittleEndian.Uint32(b[4:]))
	if int64(len(b)-8) < n {
		return nil, b
	}
	return b[8 : 8+n], b[8+n:]
}

// memberAt returns the index of the member that holds tar offset off, given
// the members' start offsets in the tar stream.
func memberAt(starts []int64, off int64) int {
	return sort.Search(len(starts), func(i int) bool { return starts[i] > off }) - 1
}
