package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRunStdin: -i passes stdin through; without it the container reads
// nothing, as docker run.
func TestRunStdin(t *testing.T) {
	store := newStore(t)
	if r := strataRun(t, store, "hi\n", "run", "-i", "base", "cat"); r.Code != 0 || r.Stdout != "hi\n" {
		t.Errorf("echo hi | strata run -i base cat:\n%s", r)
	}
	if r := strataRun(t, store, "hi\n", "run", "base", "cat"); r.Code != 0 || r.Stdout != "" {
		t.Errorf("echo hi | strata run base cat (no -i):\n%s", r)
	}
	// a command that stops reading early ends the run at once
	start := time.Now()
	if r := strataRun(t, store, strings.Repeat("line\n", 200_000), "run", "-i", "base", "head", "-n", "1"); r.Code != 0 || r.Stdout != "line\n" {
		t.Errorf("run -i head -n 1:\n%s", r)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("run -i head took %s", d)
	}
}

// TestRunVolume: -v HOST:CONTAINER[:ro] binds a host directory.
func TestRunVolume(t *testing.T) {
	store := newStore(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "in"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := strata(t, store, "run", "-v", host+":/data", "base", "sh", "-c", "cat /data/in && echo back > /data/out")
	if r.Stdout != "from host\n" {
		t.Errorf("read through the bind: %q", r.Stdout)
	}
	if b, err := os.ReadFile(filepath.Join(host, "out")); err != nil || string(b) != "back\n" {
		t.Errorf("write through the bind: %q %v", b, err)
	}
	r = strataRun(t, store, "", "run", "-v", host+":/data:ro", "base", "sh", "-c", "cat /data/in; echo x > /data/ro")
	if r.Code == 0 || !strings.Contains(r.Stderr, "Read-only file system") || r.Stdout != "from host\n" {
		t.Errorf("write to a :ro bind:\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(host, "ro")); err == nil {
		t.Error("a :ro bind was written")
	}
	for _, bad := range []string{"relative:/data", host + "/missing:/data", host + ":data", host + ":/data:bogus", "/data"} {
		r := strataRun(t, store, "", "run", "-v", bad, "base", "true")
		if r.Code != 2 && r.Code != 1 || !strings.Contains(r.Stderr, "-v") {
			t.Errorf("-v %s:\n%s", bad, r)
		}
	}
}

// TestRunNetworkNone: --network none leaves only the loopback interface.
func TestRunNetworkNone(t *testing.T) {
	store := newStore(t)
	if r := strata(t, store, "run", "--network", "none", "base", "ls", "/sys/class/net"); strings.Fields(r.Stdout) == nil || strings.Join(strings.Fields(r.Stdout), " ") != "lo" {
		t.Errorf("--network none interfaces: %q", r.Stdout)
	}
	host, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	if r := strata(t, store, "run", "--network", "host", "base", "ls", "/sys/class/net"); len(strings.Fields(r.Stdout)) != len(host) {
		t.Errorf("--network host interfaces: %q, host has %d", r.Stdout, len(host))
	}
	if r := strataRun(t, store, "", "run", "--network", "bridge", "base", "true"); r.Code != 2 {
		t.Errorf("--network bridge:\n%s", r)
	}
}

// TestRunName: two containers cannot run under one name at once; the name
// is free again when the first ends.
func TestRunName(t *testing.T) {
	store := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := suite.Command(ctx, store, runOpts{}, "run", "--name", "web", "base", "sh", "-c", "echo started; sleep 30")
	stdout, err := first.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	first.Stderr = &stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		first.Process.Signal(syscall.SIGTERM)
		first.Wait()
	}()
	line := make([]byte, len("started\n"))
	if _, err := io.ReadFull(stdout, line); err != nil {
		t.Fatalf("first container: %v\n%s", err, stderr.String())
	}
	r := strataRun(t, store, "", "run", "--name", "web", "base", "true")
	if r.Code == 0 || !strings.Contains(r.Stderr, `"web" is already in use`) {
		t.Errorf("second container with the same name:\n%s", r)
	}
	if r := strataRun(t, store, "", "run", "--name", "-bad", "base", "true"); r.Code != 2 {
		t.Errorf("--name -bad:\n%s", r)
	}
	strata(t, store, "run", "--name", "other", "base", "true")
	first.Process.Signal(syscall.SIGTERM)
	first.Wait()
	strata(t, store, "run", "--name", "web", "base", "true")
}

// TestRunTTY: -t gives the process a terminal (the pty strata runs on).
func TestRunTTY(t *testing.T) {
	store := newStore(t)
	ptm, pts, err := openPty()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := suite.Command(ctx, store, runOpts{}, "run", "-i", "-t", "base", "sh", "-c", "test -t 0 && test -t 1 && echo IS-A-TTY; read line; echo got:$line")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	before, err := unix.IoctlGetTermios(int(ptm.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&out, ptm); close(done) }()
	time.Sleep(2 * time.Second)
	fmt.Fprint(ptm, "typed\r")
	err = cmd.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	t.Logf("pty output: %q", out.String())
	// the terminal is back in the mode it had (runc made it raw meanwhile)
	if after, err := unix.IoctlGetTermios(int(ptm.Fd()), unix.TCGETS); err != nil || after.Lflag != before.Lflag || after.Iflag != before.Iflag {
		t.Errorf("terminal modes after run -t: %+v (%v), before %+v", after, err, before)
	}
	if err != nil || !strings.Contains(out.String(), "IS-A-TTY") || !strings.Contains(out.String(), "got:typed") {
		t.Errorf("run -it: %v\n%s", err, out.String())
	}
	// -i -t with a stdin that is not a terminal fails as docker does
	r := strataRun(t, store, "", "run", "-i", "-t", "base", "true")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not a TTY") {
		t.Errorf("run -it without a terminal:\n%s", r)
	}
}

// openPty opens a new pseudo-terminal pair.
func openPty() (*os.File, *os.File, error) {
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		ptm.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		ptm.Close()
		return nil, nil, err
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptm.Close()
		return nil, nil, err
	}
	return ptm, pts, nil
}
