package chroot

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// sockProxy is a socket in the rootfs that forwards each connection to a
// socket on another filesystem (which a hard link cannot reach).
type sockProxy struct {
	ln    *net.UnixListener
	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// newSockProxy listens at name in the directory parent, with the owner and
// mode of the socket source (stat st), and forwards to source.
func newSockProxy(source string, parent *os.File, name string, st *unix.Stat_t) (*sockProxy, error) {
	// The path through the descriptor stays short, as a socket's must.
	at := "/proc/self/fd/" + strconv.Itoa(int(parent.Fd())) + "/" + name
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: at, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", source, err)
	}
	ln.SetUnlinkOnClose(false) // the mount point goes with the mount
	p := &sockProxy{ln: ln, conns: map[net.Conn]bool{}}
	pfd := int(parent.Fd())
	if err := unix.Fchownat(pfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		p.close()
		return nil, fmt.Errorf("proxy %s: chown: %w", source, err)
	}
	if err := unix.Fchmodat(pfd, name, st.Mode&0o7777, 0); err != nil {
		p.close()
		return nil, fmt.Errorf("proxy %s: chmod: %w", source, err)
	}
	p.wg.Add(1)
	go p.serve(source)
	return p, nil
}

func (p *sockProxy) serve(source string) {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("unix", source)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// track records a connection pair, unless the proxy is closed.
func (p *sockProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

// pipe copies from one end to the other, and ends the other's writing.
func (p *sockProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	if u, ok := dst.(*net.UnixConn); ok {
		_ = u.CloseWrite()
	}
}

// close stops listening, ends every connection and waits for the copies.
func (p *sockProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
