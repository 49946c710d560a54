package runc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/executor/testsuite"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/snapshot/overlay"
)

const busyboxPath = "/bin/busybox"

// testPrefix starts every container id the tests use, so leftover checks only
// look at this test process's containers (other strata runs may be live).
var testPrefix = fmt.Sprintf("strata-t%d-", os.Getpid())

// requireRunc skips the test unless it runs as root with runc and busybox-static.
func requireRunc(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runc tests need root; run the tests as root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not found in PATH (apt-get install runc)")
	}
	if _, err := os.Stat(busyboxPath); err != nil {
		t.Skip("busybox not found at /bin/busybox (apt-get install busybox-static)")
	}
}

// newRunner returns a Runner whose state and bundle dirs are checked for leftovers
// when the test ends.
func newRunner(t testing.TB) *Runner {
	t.Helper()
	d := t.TempDir()
	r := &Runner{StateDir: filepath.Join(d, "state"), BundleDir: filepath.Join(d, "bundles")}
	t.Cleanup(func() { checkNoLeftovers(t, r) })
	return r
}

func checkNoLeftovers(t testing.TB, r *Runner) {
	t.Helper()
	out, err := exec.Command("runc", "--root", r.StateDir, "list", "-q").CombinedOutput()
	if err != nil {
		t.Errorf("runc list: %v: %s", err, out)
	} else if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("containers left behind: %s", s)
		for _, id := range strings.Fields(s) {
			_ = exec.Command("runc", "--root", r.StateDir, "delete", "--force", id).Run()
		}
	}
	ents, _ := os.ReadDir(r.BundleDir)
	for _, e := range ents {
		t.Errorf("bundle left behind: %s", e.Name())
	}
	for _, c := range leftoverCgroups(t) {
		t.Errorf("cgroup left behind: %s", c)
	}
}

// leftoverCgroups lists cgroup directories named like test containers.
func leftoverCgroups(t testing.TB) []string {
	t.Helper()
	var left []string
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), testPrefix) {
			left = append(left, p)
			return filepath.SkipDir
		}
		if strings.Count(p, "/") > 8 {
			return filepath.SkipDir
		}
		return nil
	})
	return left
}

// busyboxRootfs makes a minimal rootfs: /bin/busybox with applet links, and (with
// etc) /etc/passwd and /etc/group with root, app (1000) and nobody.
func busyboxRootfs(t testing.TB, dir string, etc bool) {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(busyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "id", "ls", "cat", "echo", "pwd", "sleep", "true", "false", "ip", "touch", "mkdir", "env", "hostname", "stat"} {
		if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil {
			t.Fatal(err)
		}
	}
	if !etc {
		return
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nwheel:x:10:app\napp:x:1000:\nstaff:x:50:app,nobody\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newRootfs(t testing.TB) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "rootfs")
	busyboxRootfs(t, d, true)
	return d
}

// run runs a shell command and returns its exit code and combined output.
func run(t *testing.T, r *Runner, p Process) (int, string) {
	t.Helper()
	var out testsuite.SyncBuffer
	p.Stdout, p.Stderr = &out, &out
	if p.ID == "" {
		p.ID = testPrefix + strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	}
	code, err := r.Run(context.Background(), p)
	if err != nil {
		t.Fatalf("Run: %v (output %q)", err, out.String())
	}
	return code, out.String()
}

func sh(cmd string) []string { return []string{"/bin/sh", "-c", cmd} }

func TestExitCode(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	code, out := run(t, r, Process{Rootfs: rootfs, Args: sh("echo out; echo err >&2; exit 3")})
	if code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	// One writer for both: one pipe, so the lines keep their order.
	if out != "out\nerr\n" {
		t.Fatalf("output %q", out)
	}
	code, _ = run(t, r, Process{ID: testPrefix + "true", Rootfs: rootfs, Args: []string{"/bin/true"}})
	if code != 0 {
		t.Fatalf("true exited %d", code)
	}
}

// TestOutputOrder checks that stdout and stderr given as one writer arrive
// in the order the process wrote them (one pipe, read by one reader), run
// after run, and that separate writers each get their own stream.
func TestOutputOrder(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	script := `i=0; while [ $i -lt 40 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done; ls /nonexistent`
	var want strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&want, "out %d\nerr %d\n", i, i)
	}
	want.WriteString("ls: /nonexistent: No such file or directory\n")
	for n := 0; n < 5; n++ {
		code, out := run(t, r, Process{ID: fmt.Sprintf("%sorder-%d", testPrefix, n), Rootfs: rootfs, Args: sh(script)})
		if code != 1 {
			t.Fatalf("run %d: exit code %d, want 1", n, code)
		}
		if out != want.String() {
			t.Fatalf("run %d: output out of order:\n%s", n, out)
		}
	}
	var stdout, stderr testsuite.SyncBuffer
	code, err := r.Run(context.Background(), Process{ID: testPrefix + "order-split", Rootfs: rootfs, Args: sh("echo out; echo err >&2"), Stdout: &stdout, Stderr: &stderr})
	if err != nil || code != 0 {
		t.Fatalf("Run: %d %v", code, err)
	}
	if stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Errorf("separate writers: stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

func TestStdoutStreamed(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	pr, pw := io.Pipe()
	lines := make(chan string, 10)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				lines <- string(buf[:n])
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	errc := make(chan error, 1)
	go func() {
		_, err := r.Run(context.Background(), Process{
			ID: testPrefix + "stream", Rootfs: rootfs, Stdout: pw, Stderr: pw,
			Args: sh("echo first; sleep 2; echo second"),
		})
		pw.Close()
		errc <- err
	}()
	select {
	case l := <-lines:
		if l != "first\n" {
			t.Fatalf("first chunk %q", l)
		}
	case <-time.After(1800 * time.Millisecond):
		t.Fatal("first line not streamed before the command finished")
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestEnvCwdHostname(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	code, out := run(t, r, Process{
		Rootfs: rootfs,
		Env:    []string{"FOO=bar baz"},
		Cwd:    "/work/dir",
		Args:   sh(`echo "$FOO|$PATH|$(pwd)|$(hostname)|$HOME"`),
	})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if want := "bar baz|" + DefaultPath + "|/work/dir|strata|/root\n"; out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	st, err := os.Stat(filepath.Join(rootfs, "work/dir"))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
		t.Fatalf("cwd not kept in rootfs: %v %v", st, err)
	}

	_, out = run(t, r, Process{
		ID: testPrefix + "env2", Rootfs: rootfs, Hostname: "builder",
		Env:  []string{"PATH=/bin"},
		Args: sh(`echo "$PATH $(hostname)"`),
	})
	if out != "/bin builder\n" {
		t.Fatalf("got %q", out)
	}
}

// TestCgroupMount checks that a RUN sees its own cgroup, read-only, at
// /sys/fs/cgroup as under Docker and BuildKit: the cgroup.procs there lists
// the container's pid 1 (pids are shown in the container's pid namespace),
// and nothing can be created in it.
func TestCgroupMount(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	code, out := run(t, r, Process{
		Rootfs: newRootfs(t),
		Args: sh(`f=/sys/fs/cgroup/cgroup.procs; [ -e $f ] || f=/sys/fs/cgroup/pids/cgroup.procs
cat $f || exit 3
mkdir $(dirname $f)/strata-probe 2>/dev/null && echo WRITABLE
exit 0`),
	})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if !slices.Contains(strings.Fields(out), "1") {
		t.Errorf("container's pid 1 not in its cgroup.procs: %q", out)
	}
	if strings.Contains(out, "WRITABLE") {
		t.Errorf("/sys/fs/cgroup is writable: %q", out)
	}
}

func TestUser(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	// The kernel sorts the supplementary groups, so id lists them in gid order.
	tests := []struct{ user, cwd, want string }{
		{"", "", "uid=0(root) gid=0(root) groups=0(root)"},
		{"app", "/home/app/src", "uid=1000(app) gid=1000(app) groups=10(wheel),50(staff),1000(app)"},
		{"1000", "", "uid=1000(app) gid=1000(app) groups=10(wheel),50(staff),1000(app)"},
		{"1234:5", "/data", "uid=1234 gid=5 groups=5"},
		{"4242", "", "uid=4242 gid=0(root) groups=0(root)"},
		{"nobody:app", "", "uid=65534(nobody) gid=1000(app) groups=1000(app)"},
	}
	for i, tt := range tests {
		code, out := run(t, r, Process{ID: testPrefix + "user-" + string(rune('a'+i)), Rootfs: rootfs, User: tt.user, Cwd: tt.cwd, Args: []string{"id"}})
		if code != 0 || strings.TrimSpace(out) != tt.want {
			t.Errorf("USER %q: exit %d, id = %q, want %q", tt.user, code, out, tt.want)
		}
	}
	// Cwd created for the user is owned by the user.
	var st = statOwner(t, filepath.Join(rootfs, "home/app/src"))
	if st != [2]uint32{1000, 1000} {
		t.Errorf("/home/app/src owned by %v", st)
	}
	if st := statOwner(t, filepath.Join(rootfs, "home/app")); st != [2]uint32{1000, 1000} {
		t.Errorf("/home/app owned by %v", st)
	}
	if st := statOwner(t, filepath.Join(rootfs, "data")); st != [2]uint32{1234, 5} {
		t.Errorf("/data owned by %v", st)
	}

	_, err := r.Run(context.Background(), Process{ID: testPrefix + "ghost", Rootfs: rootfs, User: "ghost", Args: []string{"id"}})
	if err == nil || !strings.Contains(err.Error(), "unable to find user ghost: no matching entries in passwd file") {
		t.Fatalf("unknown user: err = %v", err)
	}
}

func TestNetwork(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	_, out := run(t, r, Process{ID: testPrefix + "net-none", Rootfs: rootfs, Network: NetworkNone, Args: sh("ls /sys/class/net; ip -o link | wc -l; cat /sys/class/net/lo/operstate")})
	if f := strings.Fields(out); len(f) != 3 || f[0] != "lo" || f[1] != "1" || f[2] != "unknown" {
		t.Errorf("network none sees %q, want only lo (up)", out)
	}

	hostIfs, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range hostIfs {
		want = append(want, e.Name())
	}
	_, out = run(t, r, Process{ID: testPrefix + "net-host", Rootfs: rootfs, Args: sh("ls /sys/class/net")})
	if got := strings.Fields(out); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("host network sees %q, want %q", got, want)
	}
	// Host resolv.conf and hosts are visible (read-only).
	if _, err := os.Stat("/etc/hosts"); err == nil {
		host, _ := os.ReadFile("/etc/hosts")
		code, out := run(t, r, Process{ID: testPrefix + "hosts", Rootfs: rootfs, Args: sh("cat /etc/hosts && echo x 2>/dev/null >> /etc/hosts")})
		if code == 0 || out != string(host) {
			t.Errorf("/etc/hosts: exit %d, %q", code, out)
		}
	}
}

func TestMountStubsRemoved(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	busyboxRootfs(t, rootfs, false) // no /etc, /proc, /dev, /sys
	extra := t.TempDir()
	if err := os.WriteFile(filepath.Join(extra, "data"), []byte("from bind"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, r, Process{
		Rootfs: rootfs, Cwd: "/app",
		Mounts: []specs.Mount{
			{Destination: "/mnt/tools", Type: "bind", Source: extra, Options: []string{"rbind", "ro"}},
			{Destination: "/var/cache/x", Type: "tmpfs", Source: "tmpfs"},
			{Destination: "/usr/keep/m", Type: "tmpfs", Source: "tmpfs"},
		},
		Args: sh("cat /mnt/tools/data; ls /etc; touch /usr/keep/kept-file /var/cache/x/gone"),
	})
	if code != 0 || !strings.HasPrefix(out, "from bind") {
		t.Fatalf("exit %d: %q", code, out)
	}
	var got []string
	ents, _ := os.ReadDir(rootfs)
	for _, e := range ents {
		got = append(got, e.Name())
	}
	// /app is the working directory and stays; /usr/keep holds a file written
	// next to the mount point, so /usr/keep stays but /usr/keep/m goes.
	if strings.Join(got, " ") != "app bin usr" {
		t.Fatalf("rootfs after run: %v", got)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "usr/keep/m")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("usr/keep/m: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "usr/keep/kept-file")); err != nil {
		t.Fatal(err)
	}
}

func TestMountStubsKeepExisting(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t) // has /etc but no /etc/hosts
	for _, d := range []string{"proc", "dev", "sys"} {
		if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Unix(1000000000, 0)
	if err := os.Chtimes(filepath.Join(rootfs, "etc"), old, old); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, r, Process{Rootfs: rootfs, Args: sh("echo hi > /etc/created-by-run")})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, p := range []string{"proc", "dev", "sys", "etc/passwd", "etc/created-by-run"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, p := range []string{"etc/hosts", "etc/resolv.conf"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stub %s left: %v", p, err)
		}
	}
}

func TestMountStubSymlinkedTarget(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	// As in images using systemd-resolved: the mount point is a symlink to a
	// file that does not exist; runc creates the target (inside the rootfs).
	if err := os.Symlink("/run/systemd/resolve/stub-resolv.conf", filepath.Join(rootfs, "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, r, Process{Rootfs: rootfs, Args: sh("test -r /etc/resolv.conf && echo ok")})
	if code != 0 || out != "ok\n" {
		t.Fatalf("exit %d: %q", code, out)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "run")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/run stub left: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "etc/resolv.conf")); err != nil || target != "/run/systemd/resolve/stub-resolv.conf" {
		t.Errorf("symlink changed: %q %v", target, err)
	}
}

func TestCancel(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out testsuite.SyncBuffer
	errc := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, Process{ID: testPrefix + "cancel", Rootfs: rootfs, Stdout: &out, Stderr: &out, Args: sh("echo started; sleep 100")})
		errc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "started") {
		if time.Now().After(deadline) {
			t.Fatal("container did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %v", d)
	}
	t.Logf("cancel took %v", time.Since(start))
}

// TestCancelEarly cancels while runc is still setting the container up.
func TestCancelEarly(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	for i, delay := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), delay)
		_, err := r.Run(ctx, Process{ID: testPrefix + "early-" + string(rune('a'+i)), Rootfs: rootfs, Args: sh("sleep 100")})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("delay %v: err = %v", delay, err)
		}
	}
}

func TestRuncErrors(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	_, err := r.Run(context.Background(), Process{ID: testPrefix + "noexec", Rootfs: rootfs, Args: []string{"/no/such/binary"}})
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing executable: err = %v", err)
	}
	bad := &Runner{Runtime: "/no/runc", StateDir: r.StateDir, BundleDir: r.BundleDir}
	if _, err := bad.Run(context.Background(), Process{ID: "x", Rootfs: rootfs, Args: []string{"true"}}); err == nil {
		t.Error("missing runtime: no error")
	}
	if _, err := r.Run(context.Background(), Process{ID: "bad/id", Rootfs: rootfs, Args: []string{"true"}}); err == nil {
		t.Error("bad id: no error")
	}
	if _, err := r.Run(context.Background(), Process{ID: "x", Rootfs: rootfs, Args: []string{"true"}, Cwd: "rel"}); err == nil {
		t.Error("relative cwd: no error")
	}
}

func TestOverlayRootfs(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	d := t.TempDir()
	lower := filepath.Join(d, "lower")
	busyboxRootfs(t, lower, true)
	if err := os.WriteFile(filepath.Join(lower, "etc/motd"), []byte("base"), 0o644); err != nil {
		t.Fatal(err)
	}
	upper, work, merged := filepath.Join(d, "upper"), filepath.Join(d, "work"), filepath.Join(d, "merged")
	for _, p := range []string{upper, work, merged} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := overlay.Mount(context.Background(), []string{lower}, upper, work, merged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := overlay.Unmount(merged); err != nil {
			t.Error(err)
		}
	})
	code, out := run(t, r, Process{Rootfs: merged, Cwd: "/srv", Args: sh("rm /etc/motd && echo new > /srv/file && cat /etc/passwd | wc -l")})
	if code != 0 || strings.TrimSpace(out) != "3" {
		t.Fatalf("exit %d: %q", code, out)
	}
	// The upper dir is the diff: srv/file, the whiteout for etc/motd, and no stubs.
	var got []string
	err := filepath.Walk(upper, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != upper {
			rel, _ := filepath.Rel(upper, p)
			got = append(got, rel+":"+info.Mode().Type().String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "etc:d--------- etc/motd:Dc--------- srv:d--------- srv/file:----------"
	if strings.Join(got, " ") != want {
		t.Fatalf("upper = %v\nwant    %s", got, want)
	}
}

func statOwner(t *testing.T, p string) [2]uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return [2]uint32{st.Uid, st.Gid}
}

func BenchmarkRunTrue(b *testing.B) {
	requireRunc(b)
	r := newRunner(b)
	rootfs := newRootfs(b)
	i := 0
	for b.Loop() {
		i++
		code, err := r.Run(context.Background(), Process{ID: testPrefix + "bench-" + strconv.Itoa(i), Rootfs: rootfs, Args: []string{"/bin/true"}})
		if err != nil || code != 0 {
			b.Fatalf("code %d err %v", code, err)
		}
	}
}

func TestRelativeDirs(t *testing.T) {
	requireRunc(t)
	rootfs := newRootfs(t)
	d := t.TempDir()
	t.Chdir(d)
	r := &Runner{StateDir: "state", BundleDir: "bundles"}
	t.Cleanup(func() {
		checkNoLeftovers(t, &Runner{StateDir: filepath.Join(d, "state"), BundleDir: filepath.Join(d, "bundles")})
	})
	code, err := r.Run(context.Background(), Process{ID: testPrefix + "rel", Rootfs: rootfs, Args: []string{"/bin/true"}})
	if err != nil || code != 0 {
		t.Fatalf("code %d err %v", code, err)
	}
}

// TestBackgroundDelete: with Deletes set, a container whose process ended
// normally is deleted after Run returns, and Deletes.Wait waits for it; a
// failed run is still deleted before Run returns.
func TestBackgroundDelete(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	r.Deletes = &sync.WaitGroup{}
	rootfs := newRootfs(t)
	for i := 0; i < 3; i++ {
		if code, out := run(t, r, Process{ID: fmt.Sprintf("%sbg-%d", testPrefix, i), Rootfs: rootfs, Args: sh("exit 4")}); code != 4 {
			t.Fatalf("exit code %d, want 4: %s", code, out)
		}
	}
	r.Deletes.Wait()
	if ents, _ := os.ReadDir(r.StateDir); len(ents) != 0 {
		t.Errorf("runc state left after Deletes.Wait: %d containers", len(ents))
	}
	// a runc failure (no such command) is deleted before Run returns
	if _, err := r.Run(context.Background(), Process{ID: testPrefix + "bg-fail", Rootfs: rootfs, Args: []string{"/no/such/command"}}); err == nil {
		t.Fatal("running a missing command: want an error")
	}
	if _, err := os.Stat(filepath.Join(r.StateDir, testPrefix+"bg-fail")); err == nil {
		t.Error("the failed container's state is there after Run returned")
	}
	r.Deletes.Wait()
}

// buildAddKey builds testdata/addkey (static) into rootfs as /bin/addkey.
func buildAddKey(t *testing.T, rootfs string) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not found in PATH (needed to build the add_key probe)")
	}
	cmd := exec.Command(gobin, "build", "-o", filepath.Join(rootfs, "bin", "addkey"), "./testdata/addkey")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build addkey: %v: %s", err, out)
	}
}

// sandboxProbe is a shell script that prints what a RUN may do: its seccomp
// mode, no_new_privs, effective capabilities, whether it can create a user
// namespace, mount a tmpfs, read /proc/timer_list (a masked path) and add a key to the user keyring.
const sandboxProbe = `b=/bin/busybox
$b grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status
$b unshare -U true 2>/dev/null && echo USERNS=yes || echo USERNS=no
$b mkdir -p /mnt && $b mount -t tmpfs x /mnt 2>/dev/null && echo MOUNT=yes || echo MOUNT=no
[ -n "$($b head -c 16 /proc/timer_list 2>/dev/null)" ] && echo MASKED=no || echo MASKED=yes
/bin/addkey >/dev/null 2>&1 && echo ADDKEY=yes || echo ADDKEY=no
exit 0`

// dockerCapEff is CapEff for Docker's default capability set (defaultCaps).
const dockerCapEff = "00000000a80425fb"

func TestSandbox(t *testing.T) {
	requireRunc(t)
	r := newRunner(t)
	rootfs := newRootfs(t)
	buildAddKey(t, rootfs)
	for _, tc := range []struct {
		security string
		want     []string
	}{
		{"", []string{"Seccomp:\t2", "NoNewPrivs:\t1", "CapEff:\t" + dockerCapEff, "USERNS=no", "MOUNT=no", "MASKED=yes", "ADDKEY=no"}},
		{SecurityInsecure, []string{"Seccomp:\t0", "USERNS=yes", "MOUNT=yes", "MASKED=no", "ADDKEY=yes"}},
	} {
		t.Run("security-"+tc.security, func(t *testing.T) {
			code, out := run(t, r, Process{Rootfs: rootfs, Args: sh(sandboxProbe), Security: tc.security})
			if code != 0 {
				t.Fatalf("exit %d: %s", code, out)
			}
			lines := strings.Split(out, "\n")
			for _, w := range tc.want {
				if !slices.Contains(lines, w) {
					t.Errorf("want %q in:\n%s", w, out)
				}
			}
		})
	}
}
