package netns

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNewClose(t *testing.T) {
	needNetns(t)
	dir := t.TempDir()
	n, err := New(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(n.Path, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		t.Errorf("%s is not a namespace file (statfs type %x, %v)", n.Path, st.Type, err)
	}
	if rc, _ := os.ReadFile(n.ResolvConf); !strings.HasPrefix(string(rc), "nameserver "+DNS+"\n") {
		t.Errorf("resolv.conf = %q", rc)
	}
	pid := n.slirp.Process.Pid
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	checkGone(t, dir, pid)
}

// needNetns skips the test unless it can make namespaces: as root, with
// slirp4netns.
func needNetns(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	if err := Available(); err != nil {
		t.Skip(err)
	}
}

// checkGone fails when a slirp4netns of pids still runs, or anything (a
// file, a mount) is left under dir.
func checkGone(t *testing.T, dir string, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("slirp4netns (pid %d) still runs", pid)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left in %s: %v", dir, ents)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), dir) {
		t.Errorf("mount left under %s", dir)
	}
}

func TestNewCanceled(t *testing.T) {
	needNetns(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(ctx, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("New with a canceled context: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left in %s: %v", dir, ents)
	}
}

// A Pool keeps one namespace ready: the second Get takes the spare made
// after the first, a fresh namespace; namespaces given back and the spare
// are gone, slirp4netns and mounts included, once the pool is closed.
func TestPool(t *testing.T) {
	needNetns(t)
	dir := t.TempDir()
	p := &Pool{Dir: dir}
	ctx := context.Background()
	n1, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var spare *NS
	for deadline := time.Now().Add(10 * time.Second); spare == nil && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		p.mu.Lock()
		spare = p.spare
		p.mu.Unlock()
	}
	if spare == nil {
		t.Fatal("no spare namespace made after the first Get")
	}
	n2, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n2 != spare || n1 == n2 || n1.Path == n2.Path {
		t.Errorf("the second Get did not take the spare (%s, %s, spare %s)", n1.Path, n2.Path, spare.Path)
	}
	// one still out when the pool closes: released after, closed at once
	late, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, n := range []*NS{n1, n2} {
		var st unix.Statfs_t
		if err := unix.Statfs(n.Path, &st); err != nil || st.Type != unix.NSFS_MAGIC {
			t.Errorf("%s is not a namespace file (statfs type %x, %v)", n.Path, st.Type, err)
		}
		pids = append(pids, n.slirp.Process.Pid)
		if err := p.Release(n); err != nil {
			t.Error(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx); err == nil {
		t.Error("Get on a closed pool")
	}
	pids = append(pids, late.slirp.Process.Pid)
	if err := p.Release(late); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(late.Path); err == nil {
		t.Errorf("%s is still there after its release from a closed pool", late.Path)
	}
	checkGone(t, dir, pids...)
}
