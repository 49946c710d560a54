package layer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"runtime"
	"sync"
	"time"

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
// Compression is most of the CPU of a large COPY. klauspost's level 2
// compresses 4 MiB members 1.35 to 2.3 times as fast as its level 3 on one
// core (2026-12-03: the benchmark's text 295 against 180 MB/s, a Go
// toolchain 220 against 150, /usr/lib 193 against 84) for layers 0.3%,
// 2.5% and 3.5% larger; its level 1 is both slower and larger than 2.
// (Level 3 had replaced 5, 1.3 to 1.8 times as fast for 5-8% larger
// layers.) --compression-level 5 or more gives the smaller layers.
const DefaultGzipLevel = 2

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
	// DiffState is the state of the sha256 of the tar stream after this
	// member (its binary marshaling): a later commit whose first members
	// are the first members of this blob takes the hash up from there
	// instead of reading and hashing those bytes again.
	DiffState []byte `json:"diffState,omitempty"`
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

// memberWriter cuts the tar stream written to it into members and
// compresses them in parallel (or copies them from an earlier blob), in
// order, into w.
type memberWriter struct {
	w      io.Writer
	c      Compression
	level  int
	format string

	buf   []byte // the bytes of the member being filled, except holes
	holes []hole // the ranges of it that are still in files
	fill  int    // its size: buf and holes
	bufs  sync.Pool
	cbufs sync.Pool       // compressed members, back from hashBlob
	order chan *memberJob // every member, in order, for the writer
	hashq chan *memberJob // every member, in order, for hashDiff
	jobs  chan *memberJob
	done  chan error // the writer goroutine's end
	wg    sync.WaitGroup

	zenc  *zstd.Encoder
	gzips sync.Pool

	diff    hash.Hash // sha256 of the tar stream
	states  [][]byte  // its state after each member, by hashDiff
	hashErr error     // hashDiff's, see there
	chain   reuseChain
	blob    hash.Hash   // sha256 of the blob
	blobq   chan []byte // the blob's bytes, in order, for hashBlob
	blobd   chan struct{}

	fp    hash.Hash // the Sum of the member being filled
	run   hash.Hash // its bytes since the last element of fp
	runN  int64
	known struct {
		sum       [sha256.Size]byte
		left, off int64  // bytes of it still to come; the offset reached
		path      string // the file the bytes are read from, when needed
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
	data  []byte // the member's bytes, except holes
	holes []hole
	size  int
	sum   digest.Digest // see Member.Sum
	// skip, when set, is the member of the chain's blob this member is
	// (see reuseChain): its bytes are not needed
	skip *chainRef
	// full is the member's bytes, holes filled, and chained says the
	// tar stream's hash takes the chain's state after the member instead
	// of hashing them (the worker sets both before it closes ready)
	full    []byte
	chained bool
	ready   chan struct{}
	out     chan memberResult
	hashed  chan struct{} // closed once the tar stream's hash has data
}

type memberResult struct {
	data   []byte // compressed bytes
	member Member
	err    error
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
	m.addReuse(reuse)
	n := memberWorkers()
	m.order = make(chan *memberJob, n+1)
	m.hashq = make(chan *memberJob, n+1)
	m.jobs = make(chan *memberJob, n)
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
		k := min(len(p), maxMember-m.fill)
		if m.known.left > 0 {
			k = int(min(int64(k), m.known.left))
			m.addHole(k)
			m.known.left -= int64(k)
			m.known.off += int64(k)
			if m.known.left == 0 {
				m.element('E', nil, m.known.off)
			}
		} else {
			m.run.Write(p[:k])
			m.runN += int64(k)
			m.buf = append(m.buf, p[:k]...)
		}
		m.fill += k
		m.total += int64(k)
		p = p[k:]
		if m.fill == maxMember {
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
	if m.fill < minMember {
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

// Content tells the writer that the next size bytes are the content of the
// file at path, whose sha256 is sum (hex): the members holding them are
// identified by sum, without hashing those bytes (see Member.Sum). When
// Content returns true, the writer reads the bytes from path itself, and
// only if it needs them: the size bytes the caller then writes stand in
// for them and are not kept (write zeros). The file must not change until
// Close. False (a sum that is not a sha256) leaves the bytes to the caller.
func (m *memberWriter) Content(size int64, sum, path string) bool {
	b, err := hex.DecodeString(sum)
	if err != nil || len(b) != sha256.Size || size <= 0 || m.known.left > 0 {
		return false
	}
	m.known.left, m.known.off, m.known.path = size, 0, path
	copy(m.known.sum[:], b)
	m.element('C', m.known.sum[:], 0)
	return true
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

func (m *memberWriter) putBuf(b []byte) {
	if b != nil {
		m.bufs.Put(&b)
	}
}

// getCBuf returns an empty buffer for a compressed member, of at least
// capacity n: the writer's memory is reused member after member instead of
// growing by the size of the blob.
func (m *memberWriter) getCBuf(n int) []byte {
	if b, ok := m.cbufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, n)
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
	if m.fill == 0 || m.err != nil {
		return
	}
	m.queue()
}

// queue hands the member just filled to the workers and to the tar
// stream's hash, in order, and starts the next member's Sum.
func (m *memberWriter) queue() {
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
	j := &memberJob{data: m.buf, holes: m.holes, size: m.fill, sum: sum,
		ready: make(chan struct{}), out: make(chan memberResult, 1), hashed: make(chan struct{})}
	j.skip = m.chain.follow(sum, m.fill)
	m.buf, m.holes, m.fill = nil, nil, 0
	m.order <- j
	m.hashq <- j
	m.jobs <- j
	m.cuts++
}

// hashDiff hashes the tar stream (the diffID), member by member, on a
// goroutine of its own: the one hash that cannot be split runs beside the
// production of the stream and the members' compression. A member of the
// reuse chain is not hashed: the hash takes the state after it.
func (m *memberWriter) hashDiff() {
	for j := range m.hashq {
		<-j.ready
		if j.chained {
			// follow checked the state
			_ = m.diff.(encoding.BinaryUnmarshaler).UnmarshalBinary(j.skip.state)
		} else {
			m.diff.Write(j.full)
		}
		st, _ := m.diff.(encoding.BinaryMarshaler).MarshalBinary()
		if j.skip != nil && !j.chained && !bytes.Equal(st, j.skip.state) && m.hashErr == nil {
			// The chain's member could not be copied, so it was read,
			// and its bytes are not the earlier member's although
			// their checksums said so. The members after it are
			// copied on the strength of the states that assumed them.
			m.hashErr = fmt.Errorf("member %d of the layer is not the earlier build's although the checksums of its files say so (a file changed behind its recorded checksum, and the earlier blob is unreadable): build again with --no-cache", len(m.states))
		}
		m.states = append(m.states, st)
		close(j.hashed)
	}
}

// work fills, compresses (or finds) members until the jobs end.
func (m *memberWriter) work() {
	defer m.wg.Done()
	for j := range m.jobs {
		if j.skip != nil {
			if r, ok := m.copyMember(j); ok {
				// the blob holds the earlier member's bytes, which the
				// earlier state hashed
				j.chained = true
				close(j.ready)
				j.out <- r
				continue
			}
			// A damaged earlier blob: the member is read, compressed
			// and hashed again, and hashDiff checks its state.
		}
		full, err := m.fillHoles(j)
		j.full = full
		close(j.ready)
		if err != nil {
			j.out <- memberResult{err: err}
			continue
		}
		j.out <- m.member(full, j.sum, j.skip == nil)
	}
}

// member compresses data, or copies it from an earlier blob when reuse is
// set and one holds it.
func (m *memberWriter) member(data []byte, sum digest.Digest, reuse bool) memberResult {
	mem := Member{Sum: sum, Size: int64(len(data))}
	if ref, ok := m.reuse[mem.Sum]; ok && reuse && ref.size == mem.Size {
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

func (m *memberWriter) compress(data []byte) ([]byte, error) {
	if m.c == Zstd {
		return m.zenc.EncodeAll(data, m.getCBuf(len(data)/2)), nil
	}
	b := bytes.NewBuffer(m.getCBuf(len(data)/2 + 64))
	zw, ok := m.gzips.Get().(*gzip.Writer)
	if ok {
		zw.Reset(b)
	} else {
		var err error
		if zw, err = gzip.NewWriterLevel(b, m.level); err != nil {
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
			// written before hashBlob has it: hashBlob gives the
			// buffer back for another member
			if _, err = m.w.Write(r.data); err == nil {
				m.blobq <- r.data
			}
		}
		if err != nil {
			m.failMu.Lock()
			m.failed = err
			m.failMu.Unlock()
		} else {
			m.members = append(m.members, r.member)
		}
		<-j.hashed
		m.putBuf(j.data)
		if len(j.holes) > 0 && j.full != nil {
			m.putBuf(j.full)
		}
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
	if _, err := m.w.Write(t); err != nil {
		return err
	}
	m.blobq <- t
	return nil
}

// hashBlob hashes the blob beside its writing.
func (m *memberWriter) hashBlob() {
	for b := range m.blobq {
		m.blob.Write(b)
		m.cbufs.Put(&b)
	}
	close(m.blobd)
}

// Close compresses what is left and waits for every member to be written.
func (m *memberWriter) Close() error {
	if m.cuts == 0 && m.fill == 0 && m.err == nil {
		// an empty stream is still one (empty) member: a valid gzip or
		// zstd stream
		m.queue()
	} else {
		m.cut()
	}
	close(m.order)
	close(m.hashq)
	close(m.jobs)
	m.wg.Wait()
	err := <-m.done
	if err == nil {
		// the writer waited for hashDiff's last member
		err = m.hashErr
	}
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

// Members returns the members written, with the tar stream's hash state
// after each; valid after Close.
func (m *memberWriter) Members() Members {
	if len(m.states) == len(m.members) {
		for i := range m.members {
			m.members[i].DiffState = m.states[i]
		}
	}
	return Members{Format: m.format, List: m.members}
}

// Digests returns the digests of the tar stream (the diffID) and of the
// blob; valid after Close.
func (m *memberWriter) Digests() (diffID, blob digest.Digest) {
	return digest.NewDigestFromBytes(digest.SHA256, m.diff.Sum(nil)), digest.NewDigestFromBytes(digest.SHA256, m.blob.Sum(nil))
}
