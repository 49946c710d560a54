package layer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// hole is a range of a member's bytes that is the content of a file (see
// Content): it is read only when the member's bytes are needed.
type hole struct {
	at   int // offset in the member
	path string
	off  int64 // offset in the file
	n    int
}

// addHole adds the next k bytes of the known file to the member as a hole.
func (m *memberWriter) addHole(k int) {
	if n := len(m.holes); n > 0 {
		h := &m.holes[n-1]
		if h.path == m.known.path && h.at+h.n == m.fill && h.off+int64(h.n) == m.known.off {
			h.n += k
			return
		}
	}
	m.holes = append(m.holes, hole{at: m.fill, path: m.known.path, off: m.known.off, n: k})
}

// fillHoles returns the bytes of member j: its buffer when it has no
// holes, else a new buffer with the holes read from their files.
func (m *memberWriter) fillHoles(j *memberJob) ([]byte, error) {
	if len(j.holes) == 0 {
		return j.data, nil
	}
	out := m.getBuf()
	if cap(out) < j.size {
		m.putBuf(out) // another member may fit in it
		out = make([]byte, j.size)
	}
	out = out[:j.size]
	at, from := 0, 0 // in out, in j.data
	for _, h := range j.holes {
		from += copy(out[at:h.at], j.data[from:])
		if err := readFull(h.path, out[h.at:h.at+h.n], h.off); err != nil {
			m.putBuf(out)
			return nil, err
		}
		at = h.at + h.n
	}
	copy(out[at:], j.data[from:])
	return out, nil
}

// readFull reads len(b) bytes of the file at path from offset off.
func readFull(path string, b []byte, off int64) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return fmt.Errorf("copy %s: file shrank while being read (%d bytes missing)", path, len(b))
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
