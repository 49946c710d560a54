package layer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"slices"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/pgzip"
)

// A gzip stream made of many members (strata's layers: see members.go) can
// be inflated on several cores: each member is a whole deflate stream. The
// members of a stream are not listed anywhere, so gunzipMembers guesses
// where they start (the plain header strata and most tools write: no name,
// no time) and checks each guess: a piece is taken only when it inflates
// to exactly one member whose CRC-32 and size match its trailer and which
// ends where the next piece starts. Any doubt (a single member, a header
// with a name, a guess inside a member, a damaged stream) sends the rest of
// the stream, from the first piece not taken, to the sequential reader: the
// output is the sequential reader's, byte for byte, or its error.

// memberHeader starts the members gunzipMembers looks for: gzip magic,
// deflate, no flags, no modification time (then any XFL and OS byte).
var memberHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}

const (
	gzipHeaderLen  = 10
	gzipTrailerLen = 8
	// maxPiece bounds a guessed member's compressed size: a stream with no
	// next header that soon is read sequentially from there.
	maxPiece = 6 << 20
	// readChunk is how much more of the stream is read while looking for
	// the next header.
	readChunk = 256 << 10
)

// gunzipMembers returns the inflated stream of r, a gzip stream (that
// starts with its magic), inflating its members in parallel where it can.
func gunzipMembers(r io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	g := &gunzip{src: r, w: pw, jobs: make(chan *piece, memberWorkers()), order: make(chan *piece, memberWorkers()+1), stop: make(chan struct{}), seq: make(chan struct{})}
	for range memberWorkers() {
		go g.work()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.write()
	}()
	go func() {
		g.split()
		close(g.jobs)
		close(g.order)
		<-done
	}()
	return pr
}

// gunzip is one gunzipMembers.
type gunzip struct {
	src   io.Reader
	w     *io.PipeWriter
	jobs  chan *piece   // pieces to inflate
	order chan *piece   // every piece, in order, then the rest (a tail)
	stop  chan struct{} // closed when the reader went away
	seq   chan struct{} // closed when write reads the rest sequentially
}

// piece is a guessed member (data, compressed) or, with tail set, the rest
// of the stream from data on, for the sequential reader.
type piece struct {
	data []byte
	tail io.Reader
	out  []byte
	ok   bool
	done chan struct{}
}

// split reads the stream and hands it out in pieces, ending with a tail
// when it stops guessing (a read error goes to the tail's reader too).
func (g *gunzip) split() {
	var pending []byte
	eof := false
	var readErr error
	fill := func() {
		if eof {
			return
		}
		pending = slices.Grow(pending, readChunk)
		n, err := io.ReadFull(g.src, pending[len(pending):len(pending)+readChunk])
		pending = pending[:len(pending)+n]
		if err != nil {
			eof = true
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				readErr = err
			}
		}
	}
	tail := func() {
		rest := io.MultiReader(bytes.NewReader(pending), g.src)
		if readErr != nil {
			rest = io.MultiReader(bytes.NewReader(pending), errReader{readErr})
		} else if eof {
			rest = bytes.NewReader(pending)
		}
		g.order <- &piece{tail: rest}
	}
	for {
		select {
		case <-g.stop:
			return
		case <-g.seq:
			tail() // no more guessing: the rest goes as it is
			return
		default:
		}
		for len(pending) < gzipHeaderLen+1 && !eof {
			fill()
		}
		if len(pending) == 0 && eof && readErr == nil {
			return // the stream ended after a whole member
		}
		if len(pending) <= gzipHeaderLen || !bytes.HasPrefix(pending, memberHeader) {
			tail() // not a member to guess at (a short stream errs there)
			return
		}
		from := gzipHeaderLen
		next := -1
		for {
			if i := bytes.Index(pending[from:], memberHeader); i >= 0 {
				next = from + i
				break
			}
			if eof || len(pending) >= maxPiece {
				break
			}
			from = max(gzipHeaderLen, len(pending)-len(memberHeader)+1)
			fill()
		}
		if next < 0 && !(eof && readErr == nil) {
			tail() // too long to be a guessed member, or the read failed
			return
		}
		if next < 0 {
			next = len(pending) // the last member
		}
		// the piece gets its own copy: pending's buffer is reused for
		// the rest, so at most maxPiece and a chunk are held here
		p := &piece{data: append([]byte(nil), pending[:next]...), done: make(chan struct{})}
		pending = append(pending[:0], pending[next:]...)
		g.order <- p
		g.jobs <- p
	}
}

// work inflates pieces.
func (g *gunzip) work() {
	for p := range g.jobs {
		p.out, p.ok = inflateMember(p.data)
		close(p.done)
	}
}

// inflateMember inflates data as exactly one gzip member with a plain
// header, and reports whether it was one (its trailer matching).
func inflateMember(data []byte) ([]byte, bool) {
	if len(data) < gzipHeaderLen+gzipTrailerLen || !bytes.HasPrefix(data, memberHeader) {
		return nil, false
	}
	body := bytes.NewReader(data[gzipHeaderLen:])
	trailer := data[len(data)-gzipTrailerLen:]
	size := binary.LittleEndian.Uint32(trailer[4:])
	// room for the size the trailer names (mod 2^32) and one byte more, to
	// see a member that inflates to more than it says
	out := make([]byte, min(int(size), maxMember*4)+1)
	fr := flate.NewReader(body)
	defer fr.Close()
	n, err := io.ReadFull(fr, out)
	if !errors.Is(err, io.ErrUnexpectedEOF) || n != int(size) {
		return nil, false // more, less, or not deflate
	}
	out = out[:n]
	if body.Len() != gzipTrailerLen || binary.LittleEndian.Uint32(trailer) != crc32.ChecksumIEEE(out) {
		return nil, false
	}
	return out, true
}

// write writes the pieces' output in order; from the first piece that was
// not a member, the rest of the stream goes through the sequential reader.
func (g *gunzip) write() {
	var rest []io.Reader // once sequential: the compressed bytes still to read
	for p := range g.order {
		if p.tail != nil {
			rest = append(rest, p.tail)
			continue
		}
		if rest != nil { // sequential already: the guess does not matter
			rest = append(rest, bytes.NewReader(p.data))
			continue
		}
		<-p.done
		if p.ok {
			if _, err := g.w.Write(p.out); err != nil {
				g.drain()
				return
			}
			continue
		}
		rest = append(rest, bytes.NewReader(p.data))
		close(g.seq) // split sends what it holds and the source as a tail
	}
	if rest == nil {
		g.w.Close()
		return
	}
	zr, err := pgzip.NewReaderN(io.MultiReader(rest...), 1<<20, 4)
	if err != nil {
		g.w.CloseWithError(err)
		return
	}
	_, err = io.Copy(g.w, zr)
	zr.Close()
	g.w.CloseWithError(err)
}

// drain lets split and the workers finish after the reader went away.
func (g *gunzip) drain() {
	close(g.stop)
	for p := range g.order {
		if p.done != nil {
			<-p.done
		}
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
