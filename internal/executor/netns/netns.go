// Package netns gives a container a private network namespace with outbound
// networking in user mode: a new network namespace, bound to a file so runc
// can join it by path, with slirp4netns attached to it (a tap device,
// 10.0.2.100/24, default route via 10.0.2.2, DNS forwarder at 10.0.2.3, loopback
// up). Connections to the host's loopback are refused (--disable-host-loopback),
// so a RUN step can download but not reach services on the host's 127.0.0.1.
// No bridge, no veth pair and no iptables rule is created on the host.
//
// slirp4netns exits when its exit pipe closes: on Close, or when the process
// that created the namespace dies. The namespace file is a bind mount; Close
// unmounts and removes it, and a dead process's leftovers are unmounted with its
// session directory (store.Reclaim).
package netns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses inside a namespace (slirp4netns's defaults).
const (
	// DNS is the address of the user-mode DNS forwarder.
	DNS = "10.0.2.3"
	// Tap is the name of the namespace's outbound interface.
	Tap = "tap0"
)

// readyTimeout bounds how long New waits for slirp4netns to configure the
// namespace.
const readyTimeout = 10 * time.Second

// NS is a network namespace with user-mode networking attached.
type NS struct {
	// Path is the namespace file, for the OCI spec's network namespace path.
	Path string
	// ResolvConf is a resolv.conf naming the DNS forwarder, for the
	// container's /etc/resolv.conf.
	ResolvConf string
	slirp      *exec.Cmd
	exitW      *os.File
	dir        string // removed by Close when set (a Pool's namespace)
}

// Available reports whether user-mode networking can be set up here: the
// slirp4netns binary is on PATH and this process may open /dev/net/tun
// (mode 0666 on most distributions, 0600 on some: then only root may).
func Available() error {
	if _, err := exec.LookPath("slirp4netns"); err != nil {
		return fmt.Errorf("private network needs slirp4netns (Debian package slirp4netns): %w", err)
	}
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("private network needs /dev/net/tun (as root: chmod 0666 /dev/net/tun): %w", err)
	}
	f.Close()
	return nil
}

// New creates the namespace file "netns" and "resolv.conf" in dir (which must
// exist), attaches slirp4netns to the namespace and waits until it is
// configured. On error nothing is left behind.
func New(ctx context.Context, dir string) (_ *NS, err error) {
	bin, err := exec.LookPath("slirp4netns")
	if err != nil {
		return nil, fmt.Errorf("private network needs slirp4netns (Debian package slirp4netns): %w", err)
	}
	n := &NS{Path: filepath.Join(dir, "netns"), ResolvConf: filepath.Join(dir, "resolv.conf")}
	if err := os.WriteFile(n.ResolvConf, resolvConf(), 0o644); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	if err := create(n.Path); err != nil {
		os.Remove(n.ResolvConf)
		return nil, fmt.Errorf("netns: %w", err)
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	defer readyR.Close()
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, fmt.Errorf("netns: %w", err)
	}
	n.exitW = exitW
	var stderr bytes.Buffer
	cmd := exec.Command(bin,
		"--configure", "--mtu=65520", "--disable-host-loopback",
		"--ready-fd=3", "--exit-fd=4",
		"--netns-type=path", n.Path, Tap)
	cmd.ExtraFiles = []*os.File{readyW, exitR}
	cmd.Stderr = &stderr
	// Own process group: a Ctrl-C on strata's terminal must not end it
	// before the container is done with it.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	readyW.Close()
	exitR.Close()
	if err != nil {
		return nil, fmt.Errorf("netns: start slirp4netns: %w", err)
	}
	n.slirp = cmd
	ready := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		_, err := io.ReadFull(readyR, b)
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(readyTimeout):
		err = errors.New("timed out")
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		n.stopSlirp()
		return nil, fmt.Errorf("netns: slirp4netns not ready: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return n, nil
}

// Close stops slirp4netns and unmounts and removes the namespace file and
// resolv.conf. It may be called more than once.
func (n *NS) Close() error {
	n.stopSlirp()
	var errs []error
	if err := unix.Unmount(n.Path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("netns: unmount %s: %w", n.Path, err))
	}
	for _, p := range []string{n.Path, n.ResolvConf, n.dir} {
		if p == "" {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("netns: %w", err))
		}
	}
	return errors.Join(errs...)
}

// stopSlirp closes slirp4netns's exit pipe (it exits on that), kills it if it
// does not, and reaps it.
func (n *NS) stopSlirp() {
	if n.exitW != nil {
		n.exitW.Close()
		n.exitW = nil
	}
	if n.slirp == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			_ = n.slirp.Process.Kill()
		}
	}()
	_ = n.slirp.Wait()
	close(done)
	n.slirp = nil
}

// create makes a new network namespace with loopback up and binds it to path.
// The namespace is made in a locked OS thread that is never returned to the
// Go scheduler (the goroutine ends locked, so the thread exits).
func create(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread() // still in the host's namespace
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		// Locked to the end: this thread is in the new namespace.
		src := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind network namespace: %w", err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// resolvConf is the container's resolv.conf: the user-mode DNS forwarder
// and the host's search and options lines.
func resolvConf() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "nameserver %s\n", DNS)
	if f, err := os.Open("/etc/resolv.conf"); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			line := strings.TrimSpace(s.Text())
			if strings.HasPrefix(line, "search") || strings.HasPrefix(line, "options") {
				b.WriteString(line + "\n")
			}
		}
	}
	return b.Bytes()
}
