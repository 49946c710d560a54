package reliability

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// serveHello answers "hello" over HTTP on host (any port) until the test ends.
func serveHello(t *testing.T, host string) (ip, port string) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	ip, port, _ = net.SplitHostPort(l.Addr().String())
	return ip, port
}

// hostIPv4 is a non-loopback IPv4 address of the host, or "".
func hostIPv4() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}

// fetch is a shell command writing what an HTTP GET of ip:port answers to
// file (busybox-static's wget crashes here: HTTP over nc).
func fetch(ip, port, file string) string {
	return fmt.Sprintf(`{ printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 %s %s; true; } > %s`, ip, port, file)
}

// slirpProcesses lists the slirp4netns processes whose command line names a
// path below dir.
func slirpProcesses(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		argv0, _, _ := strings.Cut(string(cmd), "\x00")
		if err == nil && filepath.Base(argv0) == "slirp4netns" && strings.Contains(string(cmd), dir) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestRunNetwork: by default a RUN has its own network (loopback and a tap
// device), reaches a server on a non-loopback host address through
// user-mode NAT and cannot reach the host's 127.0.0.1; --network host can,
// --network none has only lo, and RUN --network=host needs --allow network.host.
func TestRunNetwork(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/usr/bin/slirp4netns"); err != nil {
		t.Skip("slirp4netns not installed")
	}
	store := suite.NewBusyboxStore(t)
	lip, lport := serveHello(t, "127.0.0.1")
	run := "ls /sys/class/net > /net.txt; " + fetch(lip, lport, "/loop.txt")
	hip := hostIPv4()
	if hip != "" {
		oip, oport := serveHello(t, hip)
		run += "; " + fetch(oip, oport, "/out.txt")
	}
	ctxDir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN " + run + "\n"})
	build := func(tag string, args ...string) map[string]fileEntry {
		t.Helper()
		strata(t, store, append([]string{"build", "--progress", "plain", "-t", tag}, append(args, ctxDir)...)...)
		return imageFiles(t, store, "docker.io/library/"+tag+":latest")
	}

	def := build("net-default")
	if got := def["net.txt"].content; got != "lo\ntap0\n" {
		t.Errorf("default network: interfaces %q, want lo and tap0", got)
	}
	if strings.Contains(def["loop.txt"].content, "hello") {
		t.Errorf("default network: a RUN reached the host's 127.0.0.1:%s: %q", lport, def["loop.txt"].content)
	}
	if hip != "" && !strings.Contains(def["out.txt"].content, "hello") {
		t.Errorf("default network: no outbound access to %s: %q", hip, def["out.txt"].content)
	}

	host := build("net-host", "--network", "host")
	if !strings.Contains(host["loop.txt"].content, "hello") {
		t.Errorf("--network host: the host's 127.0.0.1:%s did not answer: %q", lport, host["loop.txt"].content)
	}
	none := build("net-none", "--network", "none")
	if got := none["net.txt"].content; got != "lo\n" {
		t.Errorf("--network none: interfaces %q, want lo only", got)
	}

	hostRun := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN --network=host " + run + "\n"})
	r := strataRun(t, store, runOpts{}, "build", "--progress", "plain", hostRun)
	if r.Code == 0 || !strings.Contains(r.Stderr, "--allow network.host") {
		t.Errorf("RUN --network=host without the entitlement:\n%s", r)
	}
	strata(t, store, "build", "--progress", "plain", "--allow", "network.host", "-t", "net-allowed", hostRun)
	if got := imageFiles(t, store, "docker.io/library/net-allowed:latest")["loop.txt"].content; !strings.Contains(got, "hello") {
		t.Errorf("RUN --network=host with --allow network.host: %q", got)
	}
	requireNoLeftovers(t, store, "after the builds")
	if p := slirpProcesses(store); len(p) > 0 {
		t.Errorf("slirp4netns left running: %v", p)
	}
}

// TestRunNetworkCancelAndKill: a build stopped during a RUN with the default
// network leaves no namespace mount and no slirp4netns behind, whether it is
// canceled (SIGTERM) or killed (SIGKILL; the next command reclaims).
func TestRunNetworkCancelAndKill(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/usr/bin/slirp4netns"); err != nil {
		t.Skip("slirp4netns not installed")
	}
	store := suite.NewBusyboxStore(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		marker := fmt.Sprintf("RELIABILITY_NET_%d_%d", os.Getpid(), time.Now().UnixNano())
		ctxDir := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nENV " + marker + "=1\nRUN sleep 30\n"})
		s := suite.Start(t, store, runOpts{}, "build", "--progress", "plain", ctxDir)
		if !s.WaitFor(t, "the RUN container", time.Minute, func() bool { return len(testenv.ProcessesWithEnv(marker+"=1")) > 0 }) {
			t.Fatalf("build exited before its RUN ran:\n%s", s.Output())
		}
		if len(slirpProcesses(store)) == 0 {
			t.Errorf("%v: no slirp4netns runs for the RUN", sig)
		}
		if !s.Signal(t, sig, 30*time.Second) {
			t.Fatalf("the build ended before %v:\n%s", sig, s.Output())
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(slirpProcesses(store)) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if p := slirpProcesses(store); len(p) > 0 {
			t.Errorf("%v: slirp4netns still runs 5 s after the build ended: %v", sig, p)
		}
		if sig == syscall.SIGKILL {
			afterKill(t, store, marker+"=1")
		} else {
			requireNoLeftovers(t, store, "after SIGTERM")
		}
	}
}
