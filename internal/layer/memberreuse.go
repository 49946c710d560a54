package layer

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/opencontainers/go-digest"
)

// ReuseBlob is an earlier blob whose members a commit may copy.
type ReuseBlob struct {
	Members Members
	// Open opens the blob; it is called at most once, when a member is
	// taken from it. The caller of Commit closes nothing: the ReaderAt
	// is closed by Commit when it implements io.Closer.
	Open func() (io.ReaderAt, error)
}

// reuseChain follows an earlier blob while the members cut so far are its
// first members, in order. Those members' bytes are needed neither for the
// tar stream's hash (taken up from the state the earlier blob recorded
// after the last of them, Member.DiffState) nor for the blob (their
// compressed bytes are copied), so their files are never read: the commit
// of a tree where one file changed reads and hashes only from the member
// that holds the change on.
type reuseChain struct {
	refs []chainRef // the earlier blob's members
	next int        // the one the next member must be; -1: broken
	end  int64      // where the members followed end in the tar stream
}

// chainRef is a member of the chain's blob.
type chainRef struct {
	reuseRef
	sum   digest.Digest
	state []byte // Member.DiffState
}

// follow returns the chain's next member when it is the member just cut
// (sum and size), and otherwise breaks the chain for good.
func (c *reuseChain) follow(sum digest.Digest, size int) *chainRef {
	if c.next < 0 || c.next >= len(c.refs) {
		c.next = -1
		return nil
	}
	r := &c.refs[c.next]
	if c.next == 0 {
		if _, err := r.src.reader(); err != nil {
			c.next = -1 // the earlier blob is gone: no member to copy
			return nil
		}
	}
	end := c.end + r.size
	if r.sum != sum || r.size != int64(size) || !validState(r.state, end) {
		c.next = -1
		return nil
	}
	c.next++
	c.end = end
	return r
}

// MemberStates reads a members sidecar (the JSON of Members) and returns
// where each member ends in the tar stream and the hash state recorded
// after it (nil where none was): what `strata fsck` checks against the
// blob, since a commit takes those states up unchecked.
func MemberStates(sidecar []byte) (ends []int64, states [][]byte, err error) {
	var m Members
	if err := json.Unmarshal(sidecar, &m); err != nil {
		return nil, nil, fmt.Errorf("members sidecar: %w", err)
	}
	var at int64
	for _, mem := range m.List {
		at += mem.Size
		ends = append(ends, at)
		states = append(states, mem.DiffState)
	}
	return ends, states, nil
}

// validState reports whether b is a state of the sha256 of a stream after
// n bytes. (The marshaled state of crypto/sha256 ends with the length
// hashed, big-endian: a state recorded for another member does not pass.)
func validState(b []byte, n int64) bool {
	if len(b) < 8 || binary.BigEndian.Uint64(b[len(b)-8:]) != uint64(n) {
		return false
	}
	h, ok := sha256.New().(encoding.BinaryUnmarshaler)
	return ok && h.UnmarshalBinary(b) == nil
}

type reuseRef struct {
	src        *reuseSource
	off, csize int64
	size       int64
}

// read reads the compressed member into a buffer of m.
func (m *memberWriter) read(r reuseRef) ([]byte, error) {
	src, err := r.src.reader()
	if err != nil {
		return nil, err
	}
	out := m.getCBuf(int(r.csize))[:r.csize]
	if _, err := src.ReadAt(out, r.off); err != nil {
		return nil, err
	}
	return out, nil
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

// copyMember reads the member of the reuse chain's blob that j is. When j
// has all its bytes (no holes) it is checked against them; otherwise,
// without reading the files, only against its size.
func (m *memberWriter) copyMember(j *memberJob) (memberResult, bool) {
	var data []byte
	if len(j.holes) == 0 {
		data = j.data
	}
	out, err := m.take(j.skip.reuseRef, data)
	return memberResult{data: out, member: Member{Sum: j.sum, Size: int64(j.size), CSize: j.skip.csize}}, err == nil
}

// take reads a member of an earlier blob and checks it holds data: a gzip
// member's trailer has the CRC-32 and size of its data, a zstd frame the
// XXH64 of its content. This guards the Sums against a mistake: a member
// is reused only with the bytes the layer's tar really has. With data nil
// (bytes not read: copyMember), only the format and the size a gzip
// trailer gives are checked.
func (m *memberWriter) take(ref reuseRef, data []byte) ([]byte, error) {
	out, err := m.read(ref)
	if err != nil {
		return nil, err
	}
	switch m.c {
	case Gzip:
		if len(out) < 18 || !bytes.HasPrefix(out, magicGzip) ||
			binary.LittleEndian.Uint32(out[len(out)-4:]) != uint32(ref.size) ||
			data != nil && binary.LittleEndian.Uint32(out[len(out)-8:]) != crc32.ChecksumIEEE(data) {
			return nil, errors.New("reused gzip member does not match")
		}
	case Zstd:
		// the frame header's descriptor says whether the frame ends with
		// the low 32 bits of the XXH64 of its content
		if len(out) < 9 || !bytes.HasPrefix(out, magicZstd) || out[4]&0x04 == 0 ||
			data != nil && binary.LittleEndian.Uint32(out[len(out)-4:]) != uint32(xxhash.Sum64(data)) {
			return nil, errors.New("reused zstd frame does not match")
		}
	}
	return out, nil
}

// addReuse makes the members of the blobs of reuse that have the writer's
// format available to it, and follows the first of them as the chain.
func (m *memberWriter) addReuse(reuse []ReuseBlob) {
	for _, b := range reuse {
		if b.Members.Format != m.format || b.Open == nil {
			continue
		}
		src := &reuseSource{open: b.Open}
		m.blobs = append(m.blobs, src)
		first := len(m.blobs) == 1 // the chain follows it
		var off int64
		for _, mem := range b.Members.List {
			ref := reuseRef{src: src, off: off, csize: mem.CSize, size: mem.Size}
			off += mem.CSize
			if m.reuse == nil {
				m.reuse = map[digest.Digest]reuseRef{}
			}
			if _, ok := m.reuse[mem.Sum]; !ok {
				m.reuse[mem.Sum] = ref
			}
			if first {
				m.chain.refs = append(m.chain.refs, chainRef{reuseRef: ref, sum: mem.Sum, state: mem.DiffState})
			}
		}
	}
}
