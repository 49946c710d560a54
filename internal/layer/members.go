package layer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/fnv"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

// A layer blob is written as a sequence of independently compressed
// members: gzip members (RFC 1952 allows any number, and every gzip reader
// in use — Go's, zlib's, pigz — reads them as one stream) or zstd frames
// (concatenated frames are one stream by the zstd format). Each member
// covers a piece of the tar stream that ends at a stable point: before a
// tar entry whose name hashes to a cut (once the member holds minMember
// bytes), or at maxMember bytes. So the members of a layer depend only on
// its tar stream, and a change to one file changes the one or two members
// around it: the others are the same bytes, which a later commit takes
// from an earlier blob (Reuse) instead of compressing them again. A
// member's compressed bytes depend only on its uncompressed bytes and the
// format, so a layer with reused members is byte for byte the layer a
// fresh compression gives.
const (
	minMember = 1 << 20
	maxMember = 4 << 20
	// cutEvery: a member ends before about one entry in cutEvery once it
	// holds minMember bytes.
	cutEvery = 8
	// membersVersion names the cutting rules above; MemberFormat includes
	// it so an index made under other rules is never reused.
	membersVersion = "m3"
)

// DefaultGzipLevel is the gzip level of layers when none is asked for.
// klauspost's level 3 compresses 1.3 to 1.8 times as fast as its level 5
// (strata's default before), for layers 8% larger on a Go toolchain tree
// and 5% smaller on the benchmark's text: compression is most of the time
// of a large COPY. --compression-level 5 gives the smaller layers.
const DefaultGzipLevel = 3

// defaultZstdLevel is the zstd level of zstd.SpeedDefault.
const defaultZstdLevel = 3

// Member is one independently compressed piece of a layer blob.
type Member struct {
	// Sum identifies its uncompressed bytes: a sha256 over the sha256 of
	// each run of bytes in it and, in place of the bytes of a file whose
	// content the commit knew (DiffOptions.Known), that file's checksum
	// and the range of it the member holds. Two members with one Sum hold
	// the same bytes; the bytes of known files need no hashing.
	Sum   digest.Digest `json:"sum"`
	Size  int64         `json:"size"`  // uncompressed size
	CSize int64         `json:"csize"` // compressed size
}

// Members describes a layer blob as its members in order (offsets add up):
// what Commit returns and a later Commit can reuse.
type Members struct {
	// Format names the compression, level and cutting rules; members are
	// reused only by a commit with the same format.
	Format string   `json:"format"`
	List   []Member `json:"members"`
}

// MemberFormat returns the Members.Format of layers compressed with c at
// level (0: the default, named by the level it stands for).
func MemberFormat(c Compression, level int) string {
	if level == 0 {
		switch c {
		case Gzip:
			level = DefaultGzipLevel
		case Zstd:
			level = defaultZstdLevel
		}
	}
	return fmt.Sprintf("%s/%d/%s", c, level, membersVersion)
}

// ReuseBlob is an earlier blob whose members a commit may copy.
type ReuseBlob struct {
	Members Members
	// Open opens the blob; it is called at most once, when a member is
	// taken from it. The caller of Commit closes nothing: the ReaderAt
	// is closed by Commit when it implements io.Closer.
	Open func() (io.ReaderAt, error)
}

// memberWriter cuts the tar stream written to it into members and
// compresses them in parallel (or copies them from an earlier blob), in
// order, into w.
type memberWriter struct {
	w      io.Writer
	c      Compression
	level  int
	format string

	buf   []byte // the member being filled
	bufs  sync.Pool
	order chan memberJob // every member, in order, for the writer
	hashq chan memberJob // every member, in order, for hashDiff
	jobs  chan memberJob
	done  chan error // the writer goroutine's end
	wg    sync.WaitGroup

	zenc  *zstd.Encoder
	gzips sync.Pool

	diff  hash.Hash   // sha256 of the tar stream
	blob  hash.Hash   // sha256 of the blob
	blobq chan []byte // the blob's bytes, in order, for hashBlob
	blobd chan struct{}

	fp    hash.Hash // the Sum of the member being filled
	run   hash.Hash // its bytes since the last element of fp
	runN  int64
	known struct {
		sum       [sha256.Size]byte
		left, off int64 // bytes of it still to come; the offset reached
	}

	total int64        // tar bytes written
	index indexBuilder // the entries seen (Boundary), and where they end (End)

	reuse   map[digest.Digest]reuseRef
	blobs   []*reuseSource
	members []Member // written by the writer goroutine; read after Close
	cuts    int      // members handed to the workers
	err     error    // the first error, of the producer side

	failMu sync.Mutex
	failed error // the writer goroutine's error, seen by Write
}

type memberJob struct {
	data   []byte
	sum    digest.Digest // see Member.Sum
	out    chan memberResult
	hashed chan struct{} // closed once the tar stream's hash has data
}

type memberResult struct {
	data   []byte // compressed bytes
	member Member
	err    error
}

type reuseRef struct {
	src        *reuseSource
	off, csize int64
	size       int64
}

type reuseSource struct {
	open func() (io.ReaderAt, error)
	once sync.Once
	r    io.ReaderAt
	err  error
}

func (s *reuseSource) reader() (io.ReaderAt, error) {
	s.once.Do(func() { s.r, s.err = s.open() })
	return s.r, s.err
}

// memberWorkers bounds the members compressed at once. The output does not
// depend on it.
func memberWorkers() int { return min(runtime.GOMAXPROCS(0), 16) }

func newMemberWriter(w io.Writer, c Compression, level int, reuse []ReuseBlob) (*memberWriter, error) {
	m := &memberWriter{w: w, c: c, level: level, format: MemberFormat(c, level), diff: sha256.New(), fp: sha256.New(), run: sha256.New(), blob: sha256.New()}
	switch c {
	case Gzip:
		if level == 0 {
			m.level = DefaultGzipLevel
		}
		if _, err := gzip.NewWriterLevel(io.Discard, m.level); err != nil {
			return nil, err
		}
	case Zstd:
		zl := zstd.SpeedDefault
		if level != 0 {
			zl = zstd.EncoderLevelFromZstd(level)
		}
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zl), zstd.WithEncoderConcurrency(memberWorkers()))
		if err != nil {
			return nil, err
		}
		m.zenc = enc
	default:
		return nil, fmt.Errorf("unknown layer compression %q", string(c))
	}
	for _, b := range reuse {
		if b.Members.Format != m.format || b.Open == nil {
			continue
		}
		src := &reuseSource{open: b.Open}
		m.blobs = append(m.blobs, src)
		var off int64
		for _, mem := range b.Members.List {
			if m.reuse == nil {
				m.reuse = map[digest.Digest]reuseRef{}
			}
			if _, ok := m.reuse[mem.Sum]; !ok {
				m.reuse[mem.Sum] = reuseRef{src: src, off: off, csize: mem.CSize, size: mem.Size}
			}
			off += mem.CSize
		}
	}
	n := memberWorkers()
	m.order = make(chan memberJob, n+1)
	m.hashq = make(chan memberJob, n+1)
	m.jobs = make(chan memberJob, n)
	m.done = make(chan error, 1)
	for range n {
		m.wg.Add(1)
		go m.work()
	}
	m.blobq = make(chan []byte, n+1)
	m.blobd = make(chan struct{})
	go m.write()
	go m.hashDiff()
	go m.hashBlob()
	return m, nil
}

// Write appends p to the tar stream, cutting a member every maxMember bytes.
func (m *memberWriter) Write(p []byte) (int, error) {
	if m.err == nil {
		m.failMu.Lock()
		m.err = m.failed
		m.failMu.Unlock()
	}
	if m.err != nil {
		return 0, m.err
	}
	n := len(p)
	for len(p) > 0 {
		if m.buf == nil {
			m.buf = m.getBuf()
		}
		k := min(len(p), maxMember-len(m.buf))
		if m.known.left > 0 {
			k = int(min(int64(k), m.known.left))
			m.known.left -= int64(k)
			m.known.off += int64(k)
			if m.known.left == 0 {
				m.element('E', nil, m.known.off)
			}
		} else {
			m.run.Write(p[:k])
			m.runN += int64(k)
		}
		m.buf = append(m.buf, p[:k]...)
		m.total += int64(k)
		p = p[k:]
		if len(m.buf) == maxMember {
			m.cut()
		}
	}
	return n, m.err
}

// Boundary tells the writer that the tar entry hdr starts here: the index
// records it, and the member ends here when it holds at least minMember
// bytes and the entry's name is one of the names members end before.
func (m *memberWriter) Boundary(hdr *tar.Header) {
	m.index.entries = append(m.index.entries, IndexEntry{Name: hdr.Name, Typeflag: hdr.Typeflag, Start: m.total})
	if len(m.buf) < minMember {
		return
	}
	h := fnv.New32a()
	h.Write([]byte(hdr.Name))
	if h.Sum32()%cutEvery == 0 {
		m.cut()
	}
}

// End tells the writer that the last entry ends here: the end-of-archive
// blocks follow. A layer of more than one member gets an index (Index).
func (m *memberWriter) End() {
	m.index.end, m.index.ended = m.total, true
}

// Content tells the writer that the next size bytes are the content of a
// file whose sha256 is sum (hex): the members holding them are identified
// by sum, without hashing those bytes (see Member.Sum).
func (m *memberWriter) Content(size int64, sum string) {
	b, err := hex.DecodeString(sum)
	if err != nil || len(b) != sha256.Size || size <= 0 || m.known.left > 0 {
		return
	}
	m.known.left, m.known.off = size, 0
	copy(m.known.sum[:], b)
	m.element('C', m.known.sum[:], 0)
}

// element adds one element to the Sum of the member being filled, after
// the run of bytes before it: kind 'R' a run's sha256, 'C' the start of
// known content (its sum and offset), 'E' where it ends (its offset). The
// elements have fixed sizes, so one Sum cannot come from two sequences.
func (m *memberWriter) element(kind byte, sum []byte, off int64) {
	if kind != 'R' {
		m.closeRun()
	}
	var b [1 + sha256.Size + 8]byte
	b[0] = kind
	n := 1
	if sum != nil {
		n += copy(b[1:], sum)
	}
	if kind != 'R' {
		binary.BigEndian.PutUint64(b[n:], uint64(off))
		n += 8
	}
	m.fp.Write(b[:n])
}

// closeRun adds the run of bytes since the last element to the Sum.
func (m *memberWriter) closeRun() {
	if m.runN == 0 {
		return
	}
	m.element('R', m.run.Sum(nil), 0)
	m.run.Reset()
	m.runN = 0
}

func (m *memberWriter) getBuf() []byte {
	if b, ok := m.bufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	// grown by append up to maxMember: a small layer (most RUN steps)
	// does not cost a 4 MiB buffer
	return make([]byte, 0, 64<<10)
}

// cut hands the member filled so far to the workers, with its Sum.
func (m *memberWriter) cut() {
	if len(m.buf) == 0 || m.err != nil {
		return
	}
	m.queue(m.buf)
	m.buf = nil
}

// queue hands data, the member just filled, to the workers and to the
// tar stream's hash, in order, and starts the next member's Sum.
func (m *memberWriter) queue(data []byte) {
	m.closeRun()
	inKnown := m.known.left > 0
	if inKnown {
		m.element('E', nil, m.known.off)
	}
	sum := digest.NewDigestFromBytes(digest.SHA256, m.fp.Sum(nil))
	m.fp.Reset()
	if inKnown {
		m.element('C', m.known.sum[:], m.known.off)
	}
	j := memberJob{data: data, sum: sum, out: make(chan memberResult, 1), hashed: make(chan struct{})}
	m.order <- j
	m.hashq <- j
	m.jobs <- j
	m.cuts++
}

// hashDiff hashes the tar stream (the diffID), member by member, on a
// goroutine of its own: the one hash that cannot be split runs beside the
// production of the stream and the members' compression.
func (m *memberWriter) hashDiff() {
	for j := range m.hashq {
		m.diff.Write(j.data)
		close(j.hashed)
	}
}

// work compresses (or finds) members until the jobs end.
func (m *memberWriter) work() {
	defer m.wg.Done()
	for j := range m.jobs {
		j.out <- m.member(j.data, j.sum)
	}
}

func (m *memberWriter) member(data []byte, sum digest.Digest) memberResult {
	mem := Member{Sum: sum, Size: int64(len(data))}
	if ref, ok := m.reuse[mem.Sum]; ok && ref.size == mem.Size {
		if out, err := m.take(ref, data); err == nil {
			mem.CSize = int64(len(out))
			return memberResult{data: out, member: mem}
		}
		// an unreadable or damaged earlier blob: compress as usual
	}
	out, err := m.compress(data)
	mem.CSize = int64(len(out))
	return memberResult{data: out, member: mem, err: err}
}

// take reads a member of an earlier blob and checks it holds data: a gzip
// member's trailer has the CRC-32 and size of its data, a zstd frame the
// XXH64 of its content. This guards the Sums against a mistake: a member
// is reused only with the bytes the layer's tar really has.
func (m *memberWriter) take(ref reuseRef, data []byte) ([]byte, error) {
	r, err := ref.src.reader()
	if err != nil {
		return nil, err
	}
	out := make([]byte, ref.csize)
	if _, err := r.ReadAt(out, ref.off); err != nil {
		return nil, err
	}
	switch m.c {
	case Gzip:
		if len(out) < 18 || !bytes.HasPrefix(out, magicGzip) ||
			binary.LittleEndian.Uint32(out[len(out)-8:]) != crc32.ChecksumIEEE(data) ||
			binary.LittleEndian.Uint32(out[len(out)-4:]) != uint32(len(data)) {
			return nil, errors.New("reused gzip member does not match")
		}
	case Zstd:
		// the frame header's descriptor says whether the frame ends with
		// the low 32 bits of the XXH64 of its content
		if len(out) < 9 || !bytes.HasPrefix(out, magicZstd) || out[4]&0x04 == 0 ||
			binary.LittleEndian.Uint32(out[len(out)-4:]) != uint32(xxhash.Sum64(data)) {
			return nil, errors.New("reused zstd frame does not match")
		}
	}
	return out, nil
}

func (m *memberWriter) compress(data []byte) ([]byte, error) {
	if m.c == Zstd {
		return m.zenc.EncodeAll(data, make([]byte, 0, len(data)/2)), nil
	}
	var b bytes.Buffer
	b.Grow(len(data)/2 + 64)
	zw, ok := m.gzips.Get().(*gzip.Writer)
	if ok {
		zw.Reset(&b)
	} else {
		var err error
		if zw, err = gzip.NewWriterLevel(&b, m.level); err != nil {
			return nil, err
		}
	}
	defer m.gzips.Put(zw)
	// MTIME 0, "no time" (RFC 1952); klauspost writes the zero time.Time
	// as 0x886e0900 otherwise. A plain header (no name, no time) is what
	// gunzipMembers looks for.
	zw.ModTime = time.Unix(0, 0)
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// write writes the members to w in order, hashing the blob on the way.
func (m *memberWriter) write() {
	var err error
	for j := range m.order {
		r := <-j.out
		if err == nil {
			err = r.err
		}
		if err == nil {
			m.blobq <- r.data
			_, err = m.w.Write(r.data)
		}
		if err != nil {
			m.failMu.Lock()
			m.failed = err
			m.failMu.Unlock()
		} else {
			m.members = append(m.members, r.member)
		}
		<-j.hashed
		b := j.data
		m.bufs.Put(&b)
	}
	if err == nil && m.index.ended && len(m.members) > 1 {
		err = m.writeIndex()
	}
	close(m.blobq)
	m.done <- err
}

// writeIndex writes the blob's index after its members (see Index).
func (m *memberWriter) writeIndex() error {
	var off int64
	for _, mem := range m.members {
		off += mem.CSize
	}
	payload, err := encodeIndex(m.members, m.index.entries, m.index.end)
	if err != nil {
		return err
	}
	t := indexTrailer(m.c, payload, off)
	m.blobq <- t
	_, err = m.w.Write(t)
	return err
}

// hashBlob hashes the blob beside its writing.
func (m *memberWriter) hashBlob() {
	for b := range m.blobq {
		m.blob.Write(b)
	}
	close(m.blobd)
}

// Close compresses what is left and waits for every member to be written.
func (m *memberWriter) Close() error {
	if m.cuts == 0 && len(m.buf) == 0 && m.err == nil {
		// an empty stream is still one (empty) member: a valid gzip or
		// zstd stream
		m.queue(m.getBuf())
	} else {
		m.cut()
	}
	close(m.order)
	close(m.hashq)
	close(m.jobs)
	m.wg.Wait()
	err := <-m.done
	<-m.blobd
	if m.zenc != nil {
		m.zenc.Close()
	}
	for _, s := range m.blobs {
		if c, ok := s.r.(io.Closer); ok {
			c.Close()
		}
	}
	if err != nil {
		return err
	}
	return m.err
}

// Members returns the members written; valid after Close.
func (m *memberWriter) Members() Members {
	return Members{Format: m.format, List: m.members}
}

// Digests returns the digests of the tar stream (the diffID) and of the
// blob; valid after Close.
func (m *memberWriter) Digests() (diffID, blob digest.Digest) {
	return digest.NewDigestFromBytes(digest.SHA256, m.diff.Sum(nil)), digest.NewDigestFromBytes(digest.SHA256, m.blob.Sum(nil))
}
