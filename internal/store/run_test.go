package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNewSessionClose(t *testing.T) {
	s := openStore(t)
	se, err := s.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	pid := os.Getpid()
	if !strings.HasPrefix(se.Name, fmt.Sprintf("%d-", pid)) {
		t.Errorf("Name = %q, want PID-STARTTIME", se.Name)
	}
	var gotPid int
	var start uint64
	if _, err := fmt.Sscanf(se.Name, "%d-%d", &gotPid, &start); err != nil || start == 0 {
		t.Errorf("Name %q: start time %d %v", se.Name, start, err)
	}
	if se.Dir != s.Path("run", se.Name) {
		t.Errorf("Dir = %s", se.Dir)
	}
	if fi, err := os.Stat(se.Dir); err != nil || !fi.IsDir() {
		t.Fatalf("session dir: %v", err)
	}
	os.MkdirAll(filepath.Join(se.Dir, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(se.Dir, "a", "b", "f"), nil, 0o644)
	if err := se.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(se.Dir); !os.IsNotExist(err) {
		t.Errorf("session dir still there after Close: %v", err)
	}
}

func TestReclaim(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	live, err := s.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	var pid int
	var start uint64
	fmt.Sscanf(live.Name, "%d-%d", &pid, &start)

	dead := "999999-1"                               // no such process (pid_max is lower)
	reused := fmt.Sprintf("%d-%d", pid, start+12345) // our pid, another start time: a dead process whose pid was reused
	others := []string{"not-a-session", "abc", "12-x", "x-12"}
	for _, n := range append([]string{dead, reused}, others...) {
		if err := os.MkdirAll(filepath.Join(s.Path("run"), n, "bundle"), 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(s.Path("run"), n, "bundle", "config.json"), []byte("{}"), 0o600)
	}
	os.WriteFile(filepath.Join(live.Dir, "marker"), nil, 0o600)

	var released []string
	if err := s.Reclaim(ctx, func(_ context.Context, session string) {
		// release runs before the directory goes
		if _, err := os.Stat(s.Path("run", session)); err != nil {
			t.Errorf("release(%s) called after its dir was removed", session)
		}
		released = append(released, session)
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(released)
	want := []string{reused, dead}
	sort.Strings(want)
	if !slices.Equal(released, want) {
		t.Errorf("released = %v, want %v", released, want)
	}
	for _, n := range []string{dead, reused} {
		if _, err := os.Stat(s.Path("run", n)); !os.IsNotExist(err) {
			t.Errorf("dead session %s not removed", n)
		}
	}
	if _, err := os.Stat(filepath.Join(live.Dir, "marker")); err != nil {
		t.Errorf("the live session was touched: %v", err)
	}
	for _, n := range others {
		if _, err := os.Stat(s.Path("run", n)); err != nil {
			t.Errorf("non-session dir %s removed: %v", n, err)
		}
	}
	// nil release is allowed
	os.MkdirAll(s.Path("run", dead), 0o700)
	if err := s.Reclaim(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path("run", dead)); !os.IsNotExist(err) {
		t.Error("Reclaim(nil) kept the dead session")
	}
}

func TestReclaimStaleTempFiles(t *testing.T) {
	s := openStore(t)
	stale := filepath.Join(s.Path("tmp"), "blob-1234")
	staleDir := filepath.Join(s.Path("tmp"), "layer-5678")
	fresh := filepath.Join(s.Path("tmp"), "blob-fresh")
	os.WriteFile(stale, []byte("half a blob"), 0o600)
	os.MkdirAll(filepath.Join(staleDir, "usr"), 0o755)
	os.WriteFile(fresh, []byte("in progress"), 0o600)
	old := time.Now().Add(-72 * time.Hour)
	for _, p := range []string{stale, staleDir, filepath.Join(staleDir, "usr")} {
		os.Chtimes(p, old, old)
	}
	if err := s.Reclaim(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temp file (maybe in use) was removed: %v", err)
	}
	_, err1 := os.Stat(stale)
	_, err2 := os.Stat(staleDir)
	if err1 == nil || err2 == nil {
		t.Error("Reclaim's doc says \"Stale temp files go too\" but it never looks at ROOT/tmp: 3-day-old tmp/blob-* and tmp/layer-* left by a killed process stay forever")
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount tmpfs")
	}
}

func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		// in case the code under test did not unmount it
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
	})
}

func TestMountsUnder(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	// mountinfo escapes space, tab, newline and backslash as \NNN.
	a := filepath.Join(base, "run", "with space\tand\nnewline\\back", "mnt")
	nested := filepath.Join(a, "deeper", "m2")
	sibling := filepath.Join(base, "run2")
	mountTmpfs(t, a)
	mountTmpfs(t, nested)
	mountTmpfs(t, sibling)

	got := MountsUnder(filepath.Join(base, "run"))
	sort.Strings(got)
	want := []string{a, nested}
	if !slices.Equal(got, want) {
		t.Errorf("MountsUnder(run) = %q, want %q", got, want)
	}
	if got := MountsUnder(a + "/"); !slices.Equal(sortCopy(got), want) {
		t.Errorf("MountsUnder(mountpoint/) = %q, want the mount point itself and below", got)
	}
	if got := MountsUnder(filepath.Join(base, "ru")); len(got) != 0 {
		t.Errorf("MountsUnder(prefix of a name) = %q, want none", got)
	}
	if got := MountsUnder(filepath.Join(base, "nothing")); len(got) != 0 {
		t.Errorf("MountsUnder(empty dir) = %q", got)
	}
}

func sortCopy(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func TestReclaimUnmountsDeadSession(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t)
	live, err := s.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	liveMnt := filepath.Join(live.Dir, "merged")
	mountTmpfs(t, liveMnt)

	deadDir := s.Path("run", "999999-1")
	m1 := filepath.Join(deadDir, "step 1", "merged")
	m2 := filepath.Join(m1, "proc")
	mountTmpfs(t, m1)
	mountTmpfs(t, m2)
	os.WriteFile(filepath.Join(m1, "file-in-mount"), []byte("x"), 0o644)

	if err := s.Reclaim(ctx, nil); err != nil {
		t.Fatalf("Reclaim: %v", err)
	}
	if got := MountsUnder(deadDir); len(got) != 0 {
		t.Errorf("mounts left under the dead session: %q", got)
	}
	if _, err := os.Stat(deadDir); !os.IsNotExist(err) {
		t.Errorf("dead session dir still exists: %v", err)
	}
	if got := MountsUnder(live.Dir); !slices.Equal(got, []string{liveMnt}) {
		t.Errorf("live session mounts = %q, want %q kept", got, liveMnt)
	}

	// Close unmounts the live session's mounts and removes it.
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	if got := MountsUnder(live.Dir); len(got) != 0 {
		t.Errorf("mounts left after Close: %q", got)
	}
	if _, err := os.Stat(live.Dir); !os.IsNotExist(err) {
		t.Errorf("session dir after Close: %v", err)
	}
}

// TestReclaimThroughSymlinkedRoot: /proc/self/mountinfo lists resolved
// paths, so a store whose root path goes through a symlink (/var/lib/strata →
// /data/strata) must still find the mounts of its sessions.
func TestReclaimThroughSymlinkedRoot(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	realDir := filepath.Join(base, "real")
	if err := os.Mkdir(realDir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(realDir, link); err != nil {
		t.Fatal(err)
	}
	s, err := Open(filepath.Join(link, "store"))
	if err != nil {
		t.Fatal(err)
	}
	realMnt := filepath.Join(realDir, "store", "run", "999999-1", "merged")
	mountTmpfs(t, realMnt)
	os.WriteFile(filepath.Join(realMnt, "f"), []byte("x"), 0o644)

	found := MountsUnder(s.Path("run"))
	err = s.Reclaim(context.Background(), nil)
	left := MountsUnder(filepath.Join(realDir, "store", "run"))
	if len(found) == 0 || err != nil || len(left) != 0 {
		t.Errorf("with a store root reached through a symlink, MountsUnder(%s) = %q (mountinfo has %q), so Reclaim cannot unmount a dead session: err = %v, mounts left %q", s.Path("run"), found, realMnt, err, left)
	}
}

// TestReclaimRetries: a dead session's directory that cannot be removed
// at first (as when a container its process was starting when it died
// still writes below it) is released again and retried; here an immutable
// file stands for the writer, and the second release "stops" it.
func TestReclaimRetries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (immutable flag)")
	}
	s := openStore(t)
	dir := s.Path("run", "999999-2")
	stuck := filepath.Join(dir, "snap", "upper", "f")
	if err := os.MkdirAll(filepath.Dir(stuck), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stuck, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	immutable := func(on bool) error {
		f, err := os.Open(stuck)
		if err != nil {
			return err
		}
		defer f.Close()
		flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
		if err != nil {
			return err
		}
		const immutableFL = 0x10 // FS_IMMUTABLE_FL, linux/fs.h
		if on {
			flags |= immutableFL
		} else {
			flags &^= immutableFL
		}
		return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
	}
	if err := immutable(true); err != nil {
		t.Skipf("no immutable flag on this filesystem: %v", err)
	}
	t.Cleanup(func() { immutable(false) })
	releases := 0
	err := s.Reclaim(context.Background(), func(context.Context, string) {
		releases++
		if releases == 2 {
			if err := immutable(false); err != nil {
				t.Error(err)
			}
		}
	})
	if err != nil || releases != 2 {
		t.Fatalf("Reclaim: %v after %d releases; want success after 2", err, releases)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dead session still there: %v", err)
	}
}
