package runc

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/executor/netns"
)

// serve answers "hello" over HTTP on addr (host:0) until the test ends and
// returns the address it listens on.
func serve(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// hostAddr returns a non-loopback IPv4 address of the host, or "".
func hostAddr() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}

// TestNetworkPrivate runs with a namespace made for each run, and with a
// netns.Pool (the CLI's way: a spare made ahead, closes in the background).
func TestNetworkPrivate(t *testing.T) {
	requireRunc(t)
	if err := checkSlirp(); err != nil {
		t.Skip(err)
	}
	t.Run("each", func(t *testing.T) { testNetworkPrivate(t, nil) })
	t.Run("pool", func(t *testing.T) { testNetworkPrivate(t, &netns.Pool{Dir: t.TempDir()}) })
}

func testNetworkPrivate(t *testing.T, pool *netns.Pool) {
	r := newRunner(t)
	r.Networks = pool
	rootfs := newRootfs(t)
	loop := serve(t, "127.0.0.1")
	// busybox-static's wget crashes here (getservbyname): plain HTTP over nc.
	get := func(addr string) string {
		h, p, _ := net.SplitHostPort(addr)
		return "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 " + h + " " + p + "; echo; echo rc=$?"
	}

	// Its own loopback and a tap device only; the host's loopback is out of reach.
	_, out := run(t, r, Process{ID: testPrefix + "net-private", Rootfs: rootfs, Network: NetworkPrivate,
		Args: sh("ls /sys/class/net | tr '\\n' ' '; echo; cat /sys/class/net/lo/operstate; cat /etc/resolv.conf | head -1; " + get(loop))})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 4 || lines[0] != "lo tap0 " || lines[1] != "unknown" || lines[2] != "nameserver 10.0.2.3" || strings.Contains(out, "hello") {
		t.Errorf("private network: %q, want lo and tap0 (lo up), the DNS forwarder, and no answer from the host's loopback", out)
	}
	// The same request with the host's network is answered: the test is real.
	if _, out := run(t, r, Process{ID: testPrefix + "net-host-loop", Rootfs: rootfs, Args: sh(get(loop))}); !strings.Contains(out, "hello") {
		t.Errorf("host network cannot reach %s: %q", loop, out)
	}
	// Outbound through user-mode NAT: a server on a non-loopback host address.
	if a := hostAddr(); a != "" {
		addr := serve(t, a)
		if _, out := run(t, r, Process{ID: testPrefix + "net-out", Rootfs: rootfs, Network: NetworkPrivate, Args: sh(get(addr))}); !strings.Contains(out, "hello") {
			t.Errorf("private network cannot reach %s: %q", addr, out)
		}
	}
	if pool != nil {
		if err := pool.Close(); err != nil {
			t.Error(err)
		}
	}
	checkNoSlirp(t)
}

func checkSlirp() error {
	_, err := os.Stat("/usr/bin/slirp4netns")
	return err
}

// checkNoSlirp fails when a slirp4netns child of this process is still running.
func checkNoSlirp(t *testing.T) {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if strings.Contains(string(stat), "(slirp4netns)") && strings.Contains(string(stat), fmt.Sprintf(" %d ", os.Getpid())) {
			t.Errorf("slirp4netns left running: %s", stat)
		}
	}
}
