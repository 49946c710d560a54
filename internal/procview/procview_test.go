package procview

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// childEnv makes the test binary a child that makes the calls its
// arguments name (see child) and prints what they return.
const childEnv = "PROCVIEW_TEST_CHILD"

// init keeps a child on its main thread, whose id is the pid the test
// names the fake /proc/PID files by (LockOSThread in init: main runs on
// that thread).
func init() {
	if os.Getenv(childEnv) == "1" {
		runtime.LockOSThread()
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(child(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// child waits for a line on fd 3 (the test has made its files), then for
// each "NR PATH [MOD]" argument makes system call NR on PATH as pathCalls
// describes it, and prints "NR PATH [MOD] = RESULT" (the file's content,
// size, "ok" or link) or "NR PATH [MOD]: ERROR". MOD "nofollow" makes a
// stat not follow a final symlink, and print the file's type instead;
// "size=N" gives a readlink N as its size, and prints what it returned
// and the buffer's first 8 bytes (filled with x before).
func child(args []string) int {
	ready := os.NewFile(3, "ready")
	if _, err := bufio.NewReader(ready).ReadString('\n'); err != nil {
		fmt.Println("ready:", err)
		return 1
	}
	for _, a := range args {
		f := append(strings.Fields(a), "")
		nr, _ := strconv.Atoi(f[0])
		res, err := makeCall(uintptr(nr), f[1], f[2])
		if err != nil {
			fmt.Printf("%s: %v\n", a, err)
			continue
		}
		fmt.Printf("%s = %s\n", a, res)
	}
	return 0
}

// makeCall makes call nr on path with the arguments its kind takes.
func makeCall(nr uintptr, path, mod string) (string, error) {
	c, ok := pathCalls[nr]
	if !ok {
		return "", fmt.Errorf("call %d is not a path call", nr)
	}
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return "", err
	}
	var args []uintptr
	if c.at {
		fdcwd := unix.AT_FDCWD
		args = append(args, uintptr(fdcwd))
	}
	args = append(args, uintptr(unsafe.Pointer(p)))
	var st unix.Stat_t
	var stx unix.Statx_t
	buf := make([]byte, 256)
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC}
	var atFlags uintptr
	if mod == "nofollow" {
		atFlags = unix.AT_SYMLINK_NOFOLLOW
	}
	size := uint64(len(buf))
	if n, ok := strings.CutPrefix(mod, "size="); ok {
		size, _ = strconv.ParseUint(n, 0, 64)
		copy(buf, "xxxxxxxx")
	}
	switch c.kind {
	case kOpen:
		args = append(args, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	case kOpen2:
		args = append(args, uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how))
	case kStat:
		args = append(args, uintptr(unsafe.Pointer(&st)), atFlags)
	case kStatx:
		args = append(args, atFlags, unix.STATX_SIZE|unix.STATX_TYPE, uintptr(unsafe.Pointer(&stx)))
	case kAccess:
		args = append(args, unix.R_OK, 0)
	case kReadlink:
		args = append(args, uintptr(unsafe.Pointer(&buf[0])), uintptr(size))
	}
	args = append(args, 0, 0, 0, 0, 0, 0)
	r, _, e := unix.Syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
	if e != 0 {
		return "", e
	}
	switch c.kind {
	case kOpen, kOpen2:
		f := os.NewFile(r, path)
		defer f.Close()
		n, err := f.Read(buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case kStat, kStatx:
		mode, size := st.Mode, uint64(st.Size)
		if c.kind == kStatx {
			mode, size = uint32(stx.Mode), stx.Size
		}
		if mod == "nofollow" || c.nofollow {
			return map[bool]string{true: "symlink", false: "not a symlink"}[mode&unix.S_IFMT == unix.S_IFLNK], nil
		}
		return strconv.FormatUint(size, 10), nil
	case kReadlink:
		if mod != "" {
			return fmt.Sprintf("%d %q", r, buf[:8]), nil
		}
		return string(buf[:r]), nil
	}
	return "ok", nil
}

// testBinary returns the path of this test binary, or of a copy that uid
// may run.
func testBinary(t *testing.T, uid int) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if uid == os.Geteuid() {
		return exe
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "procview.test")
	if err := os.WriteFile(cp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return cp
}

// tree is a child started under a View.
type tree struct {
	pid   int
	ready *os.File
	out   *os.File
}

// startChild starts the test binary as a child (see child) under a View of
// roots, as uid and gid, with stdin from the file stdin.
func startChild(t *testing.T, roots Roots, uid, gid int, stdin string, calls ...string) *tree {
	t.Helper()
	if raceEnabled {
		t.Skip("the race detector's runtime in the child needs the real /proc/self/maps, not the fake /proc")
	}
	exe := testBinary(t, uid)
	in, err := os.Open(stdin)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer readyR.Close()
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	// The child's stderr (the race detector's complaints about a fake
	// /proc/self/exe) is not its output.
	errOut, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errOut.Close()
	if uid != os.Geteuid() {
		for _, f := range []*os.File{out, errOut} {
			if err := f.Chown(uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	var attr syscall.SysProcAttr
	if uid != os.Geteuid() {
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	pid, view, err := Start(roots, Cred{UID: uint32(uid), GID: uint32(gid)}, func() (int, error) {
		return syscall.ForkExec(exe, append([]string{exe}, calls...), &syscall.ProcAttr{
			Env:   []string{childEnv + "=1"},
			Files: []uintptr{in.Fd(), out.Fd(), errOut.Fd(), readyR.Fd()},
			Sys:   &attr,
		})
	})
	if err != nil {
		readyW.Close()
		out.Close()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(view.Close)
	return &tree{pid: pid, ready: readyW, out: out}
}

// wait lets the child go on, waits for it and returns its output.
func (c *tree) wait(t *testing.T) string {
	t.Helper()
	_, _ = c.ready.WriteString("go\n")
	c.ready.Close()
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(c.pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(c.out.Name())
	c.out.Close()
	if err != nil {
		t.Fatal(err)
	}
	if ws.ExitStatus() != 0 {
		t.Fatalf("child: %v, output:\n%s", ws, b)
	}
	return string(b)
}

// fakeRoots makes directories standing for /proc and /sys, with files,
// and opens them.
func fakeRoots(t *testing.T, proc, sys map[string]string) Roots {
	t.Helper()
	dir := t.TempDir()
	open := func(name string, files map[string]string) int {
		root := filepath.Join(dir, name)
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		for p, content := range files {
			p = filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			var err error
			if link, ok := strings.CutPrefix(content, "->"); ok {
				err = os.Symlink(link, p)
			} else {
				err = os.WriteFile(p, []byte(content), 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	return Roots{Proc: open("proc", proc), Sys: open("sys", sys)}
}

// callsOn returns "NR PATH" for every path call, with path for all but
// readlink, which gets link.
func callsOn(path, link string) []string {
	var calls []string
	for nr, c := range pathCalls {
		p := path
		if c.kind == kReadlink {
			p = link
		}
		calls = append(calls, fmt.Sprintf("%d %s", nr, p))
	}
	return calls
}

// wantFor is what child prints for "NR PATH" on the fake /proc/cpuinfo or
// /proc/link.
func wantFor(call string) string {
	nrs, _, _ := strings.Cut(call, " ")
	nr, _ := strconv.Atoi(nrs)
	switch c := pathCalls[uintptr(nr)]; c.kind {
	case kOpen, kOpen2:
		return call + " = fake cpuinfo"
	case kStat, kStatx:
		if c.nofollow {
			return call + " = not a symlink"
		}
		return call + " = 12"
	case kReadlink:
		return call + " = target-text"
	}
	return call + " = ok"
}

func TestEveryCall(t *testing.T) {
	roots := fakeRoots(t,
		map[string]string{"cpuinfo": "fake cpuinfo", "link": "->target-text"},
		map[string]string{"kernel/marker": "sys marker"})
	calls := callsOn("/proc/cpuinfo", "/proc/link")
	var want []string
	for _, c := range calls {
		want = append(want, wantFor(c))
	}
	openat := strconv.Itoa(unix.SYS_OPENAT)
	calls = append(calls, openat+" /sys/kernel/marker", openat+" //proc///cpuinfo", openat+" /proc/version")
	want = append(want, openat+" /sys/kernel/marker = sys marker", openat+" //proc///cpuinfo = fake cpuinfo",
		openat+" /proc/version: no such file or directory")
	got := startChild(t, roots, os.Geteuid(), os.Getegid(), os.DevNull, calls...).wait(t)
	if got != strings.Join(want, "\n")+"\n" {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

// TestSelf: /proc/self, /proc/thread-self, /proc/mounts, /dev/fd and
// /dev/stdin name the caller.
func TestSelf(t *testing.T) {
	roots := fakeRoots(t, nil, nil)
	procDir := fmt.Sprintf("/proc/self/fd/%d", roots.Proc)
	dir, err := os.Readlink(procDir)
	if err != nil {
		t.Fatal(err)
	}
	openat, readlinkat := strconv.Itoa(unix.SYS_OPENAT), strconv.Itoa(unix.SYS_READLINKAT)
	c := startChild(t, roots, os.Geteuid(), os.Getegid(), os.DevNull,
		openat+" /proc/self/exe", openat+" /dev/stdin", openat+" /dev/fd/0", openat+" /proc/thread-self/comm",
		openat+" /proc/mounts", readlinkat+" /proc/self", readlinkat+" /proc/thread-self")
	pid := strconv.Itoa(c.pid)
	files := map[string]string{
		pid + "/status":                "Name:\tchild\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t" + pid + "\nPid:\t" + pid + "\n",
		pid + "/exe":                   "fake exe",
		pid + "/fd/0":                  "fake stdin",
		pid + "/task/" + pid + "/comm": "fake comm",
		pid + "/mounts":                "fake mounts",
	}
	for p, content := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := strings.Join([]string{
		openat + " /proc/self/exe = fake exe",
		openat + " /dev/stdin = fake stdin",
		openat + " /dev/fd/0 = fake stdin",
		openat + " /proc/thread-self/comm = fake comm",
		openat + " /proc/mounts = fake mounts",
		readlinkat + " /proc/self = " + pid,
		readlinkat + " /proc/thread-self = " + pid + "/task/" + pid,
	}, "\n") + "\n"
	if got := c.wait(t); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestEdges: calls that do not follow a final symlink see the link, a
// readlink's size is an int (its upper bits are not the caller's buffer),
// /dev/stdout reads as the link a container's /dev has, and a FIFO opened
// through the view stops neither the view nor the tree.
func TestEdges(t *testing.T) {
	roots := fakeRoots(t, map[string]string{"link": "->target-text", "cpuinfo": "fake cpuinfo"}, nil)
	dir, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", roots.Proc))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	nr := func(n uintptr) string { return strconv.Itoa(int(n)) }
	calls := []string{
		nr(unix.SYS_NEWFSTATAT) + " /proc/self nofollow",
		nr(unix.SYS_STATX) + " /proc/self nofollow",
		nr(unix.SYS_READLINKAT) + " /proc/link size=0x100000004",
		nr(unix.SYS_READLINKAT) + " /proc/link size=0",
		nr(unix.SYS_READLINKAT) + " /dev/stdout",
		nr(unix.SYS_OPENAT) + " /proc/fifo",
		nr(unix.SYS_OPENAT) + " /proc/cpuinfo",
	}
	c := startChild(t, roots, os.Geteuid(), os.Getegid(), os.DevNull, calls...)
	pid := strconv.Itoa(c.pid)
	if err := os.MkdirAll(filepath.Join(dir, pid), 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, pid, "status"), []byte("Name:\tchild\nTgid:\t"+pid+"\n"), 0o644))
	must(os.Symlink(pid, filepath.Join(dir, "self")))
	want := strings.Join([]string{
		calls[0] + " = symlink",
		calls[1] + " = symlink",
		calls[2] + ` = 4 "targxxxx"`,
		calls[3] + ": invalid argument",
		calls[4] + " = /proc/self/fd/1",
		calls[5] + ": EOF", // no writer: the read ends at once
		calls[6] + " = fake cpuinfo",
	}, "\n") + "\n"
	if got := c.wait(t); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestOtherUser: the view answers a child that runs as another user (its
// memory is read and written with that user's credentials).
func TestOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a child as another user")
	}
	if raceEnabled {
		t.Skip("the race detector's runtime in the child needs the real /proc/self/maps, not the fake /proc")
	}
	if os.Getenv(noPtraceEnv) == "" {
		rerunWithoutPtrace(t)
		return
	}
	roots := fakeRoots(t,
		map[string]string{"cpuinfo": "fake cpuinfo", "link": "->target-text"}, nil)
	calls := callsOn("/proc/cpuinfo", "/proc/link")
	var want []string
	for _, c := range calls {
		want = append(want, wantFor(c))
	}
	got := startChild(t, roots, 65534, 65534, os.DevNull, calls...).wait(t)
	if got != strings.Join(want, "\n")+"\n" {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

// noPtraceEnv marks a test binary run without CAP_SYS_PTRACE.
const noPtraceEnv = "PROCVIEW_TEST_NOPTRACE"

// rerunWithoutPtrace runs the test again in a test binary without
// CAP_SYS_PTRACE (as in a container: root then may read the memory of
// another user's process only with that user's credentials).
func rerunWithoutPtrace(t *testing.T) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv (util-linux) to drop CAP_SYS_PTRACE")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace",
		exe, "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), noPtraceEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s without CAP_SYS_PTRACE: %v\n%s", t.Name(), err, out)
	}
}

// TestRoute: what goes on inside the chroot.
func TestRoute(t *testing.T) {
	v := &View{roots: Roots{Proc: 100, Sys: -1}}
	for _, tc := range []struct {
		path, rel string
		ok        bool
	}{
		{"/proc", ".", true},
		{"/proc/", ".", true},
		{"/proc/cpuinfo", "cpuinfo", true},
		{"/proc/1/root/etc", "1/root/etc", true},
		{"/proc/../etc/passwd", "", false}, // .. from the host's /proc is the host's root
		{"/proc/1/../../etc", "", false},
		{"/procfs/x", "", false},
		{"proc/cpuinfo", "", false}, // relative: inside the chroot
		{"/sys/kernel", "", false},  // no /sys
		{"/dev/stdin/x", "", false},
		{"/dev/null", "", false},
		{"/etc/passwd", "", false},
	} {
		got, ok := v.route(tc.path, 1, false)
		if ok != tc.ok || (ok && (got.rel != tc.rel || got.dir != 100)) {
			t.Errorf("route(%q) = %+v, %v; want rel %q, %v", tc.path, got, ok, tc.rel, tc.ok)
		}
	}
}
