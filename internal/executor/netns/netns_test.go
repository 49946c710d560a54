package netns

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNewClose(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	if err := Available(); err != nil {
		t.Skip(err)
	}
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
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Errorf("slirp4netns (pid %d) still runs", pid)
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
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	if err := Available(); err != nil {
		t.Skip(err)
	}
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
