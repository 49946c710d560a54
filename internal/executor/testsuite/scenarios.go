package testsuite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/executor"
)

func (s *suite) testExitCode(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{sh("exit 0"), 0},
		{sh("exit 3"), 3},
		{sh("exit 255"), 255},
		{[]string{"/bin/true"}, 0},
		{[]string{"/bin/false"}, 1},
	} {
		if code, out := s.run(t, e, executor.Process{Rootfs: rootfs, Args: tc.args}); code != tc.want {
			t.Errorf("%q: exit code %d, want %d (output %q)", tc.args, code, tc.want, out)
		}
	}
}

// testSignal: a process killed by signal N gives 128+N (killed from
// outside: a container's init ignores signals sent from inside).
func (s *suite) testSignal(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	m := markers(t, 1)[0]
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := e.Run(context.Background(), executor.Process{ID: s.id(), Rootfs: rootfs, Args: []string{"/bin/sleep", m}})
		done <- result{code, err}
	}()
	var pids []int
	if !waitFor(10*time.Second, func() bool { pids = Sleeping(m); return len(pids) == 1 }) {
		t.Fatalf("the process did not start (pids %v)", pids)
	}
	must(t, syscall.Kill(pids[0], syscall.SIGKILL))
	select {
	case r := <-done:
		if r.err != nil || r.code != 128+int(syscall.SIGKILL) {
			t.Errorf("Run = %d, %v; want %d", r.code, r.err, 128+int(syscall.SIGKILL))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its process was killed")
	}
}

// testEnv: the environment is Process.Env, PATH=DefaultPath when it has
// no PATH, and HOME from /etc/passwd when it has no HOME (as runc sets
// it); nothing of the caller's environment leaks in.
func (s *suite) testEnv(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	const script = `echo "$FOO|$PATH|$HOME"; env | while IFS== read -r k v; do echo "$k"; done | sort | tr '\n' ' '`
	for _, tc := range []struct {
		user string
		env  []string
		want string
	}{
		{"", []string{"FOO=bar baz"}, "bar baz|" + executor.DefaultPath + "|/root\nFOO HOME PATH PWD SHLVL "},
		{"", []string{"PATH=/bin:/usr/bin", "HOME=/x"}, "|/bin:/usr/bin|/x\nHOME PATH PWD SHLVL "},
		{"app", nil, "|" + executor.DefaultPath + "|/home/app\nHOME PATH PWD SHLVL "},
		{"4242", nil, "|" + executor.DefaultPath + "|/\nHOME PATH PWD SHLVL "},
	} {
		code, out := s.run(t, e, executor.Process{Rootfs: rootfs, User: tc.user, Env: tc.env, Args: sh(script)})
		if code != 0 || out != tc.want {
			t.Errorf("USER %q ENV %q: exit %d, output %q, want %q", tc.user, tc.env, code, out, tc.want)
		}
	}
}

// testCwd: the working directory is made when missing, 0755 and owned by
// the user (its missing parents too), and stays; an existing one is left
// as it is.
func (s *suite) testCwd(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	for _, tc := range []struct {
		user, cwd string
		owners    map[string][2]uint32
	}{
		{"", "", map[string][2]uint32{"": {0, 0}}},
		{"app", "/home/app/src", map[string][2]uint32{"home": {1000, 1000}, "home/app": {1000, 1000}, "home/app/src": {1000, 1000}}},
		{"1234:5", "/data/x/", map[string][2]uint32{"data": {1234, 5}, "data/x": {1234, 5}}},
		{"app", "/bin", map[string][2]uint32{"bin": {0, 0}}},
	} {
		code, out := s.run(t, e, executor.Process{Rootfs: rootfs, User: tc.user, Cwd: tc.cwd, Args: []string{"pwd"}})
		want := filepath.Clean("/" + tc.cwd)
		if code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("cwd %q: exit %d, pwd %q, want %q", tc.cwd, code, out, want)
		}
		for rel, owner := range tc.owners {
			var st syscall.Stat_t
			must(t, syscall.Lstat(filepath.Join(rootfs, rel), &st))
			if got := [2]uint32{st.Uid, st.Gid}; got != owner || st.Mode&0o7777 != 0o755 {
				t.Errorf("/%s: owner %v mode %o, want %v 755", rel, got, st.Mode&0o7777, owner)
			}
		}
	}
	// A working directory the user cannot search is entered all the same
	// (as root, before the user is set, as runc does).
	must(t, os.Mkdir(filepath.Join(rootfs, "root"), 0o700))
	code, out := s.run(t, e, executor.Process{Rootfs: rootfs, User: "app", Cwd: "/root", Args: sh("pwd; test -r . || echo cannot list")})
	if code != 0 || out != "/root\ncannot list\n" {
		t.Errorf("USER app, cwd /root (0700): exit %d, output %q", code, out)
	}
}

func (s *suite) testUser(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	// The kernel sorts the supplementary groups, so id lists them in gid order.
	for _, tc := range []struct{ user, want string }{
		{"", "uid=0(root) gid=0(root) groups=0(root)"},
		{"app", "uid=1000(app) gid=1000(app) groups=10(wheel),50(staff),1000(app)"},
		{"1000", "uid=1000(app) gid=1000(app) groups=10(wheel),50(staff),1000(app)"},
		{"1234:5", "uid=1234 gid=5 groups=5"},
		{"4242", "uid=4242 gid=0(root) groups=0(root)"},
		{"nobody:app", "uid=65534(nobody) gid=1000(app) groups=1000(app)"},
	} {
		code, out := s.run(t, e, executor.Process{Rootfs: rootfs, User: tc.user, Args: []string{"id"}})
		if code != 0 || strings.TrimSpace(out) != tc.want {
			t.Errorf("USER %q: exit %d, id = %q, want %q", tc.user, code, out, tc.want)
		}
	}
	code, err := e.Run(context.Background(), executor.Process{ID: s.id(), Rootfs: rootfs, User: "ghost", Args: []string{"id"}})
	if code != -1 || err == nil || !strings.Contains(err.Error(), "unable to find user ghost") {
		t.Errorf("unknown user: Run = %d, %v", code, err)
	}
}

// testOutput: one writer for stdout and stderr sees the lines in the
// order written, run after run; separate writers get their own stream.
func (s *suite) testOutput(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	const script = `i=0; while [ $i -lt 40 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done; ls /nonexistent`
	var want strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&want, "out %d\nerr %d\n", i, i)
	}
	want.WriteString("ls: /nonexistent: No such file or directory\n")
	for n := 0; n < 3; n++ {
		code, out := s.run(t, e, executor.Process{Rootfs: rootfs, Args: sh(script)})
		if code != 1 || out != want.String() {
			t.Fatalf("run %d: exit %d, output out of order:\n%s", n, code, out)
		}
	}
	var stdout, stderr SyncBuffer
	code, err := e.Run(context.Background(), executor.Process{ID: s.id(), Rootfs: rootfs, Args: sh("echo out; echo err >&2"), Stdout: &stdout, Stderr: &stderr})
	if err != nil || code != 0 || stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Errorf("separate writers: Run = %d, %v; stdout %q, stderr %q", code, err, stdout.String(), stderr.String())
	}
	// No writers: the output is discarded (/dev/null), the process still
	// runs, as root and as a user.
	for _, u := range []string{"", "app"} {
		code, err = e.Run(context.Background(), executor.Process{ID: s.id(), Rootfs: rootfs, User: u, Cwd: "/tmp/" + u,
			Args: sh("echo out && echo err >&2 && touch ran")})
		if _, serr := os.Stat(filepath.Join(rootfs, "tmp", u, "ran")); err != nil || code != 0 || serr != nil {
			t.Errorf("no writers, USER %q: Run = %d, %v (%v)", u, code, err, serr)
		}
	}
}

// testStreamed: output reaches the writer while the process runs.
func (s *suite) testStreamed(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	var out SyncBuffer
	errc := make(chan error, 1)
	go func() {
		_, err := e.Run(context.Background(), executor.Process{ID: s.id(), Rootfs: rootfs, Stdout: &out, Stderr: &out, Args: sh("echo first; sleep 3; echo second")})
		errc <- err
	}()
	if !waitFor(2500*time.Millisecond, func() bool { return out.String() != "" }) {
		t.Error("the first line was not streamed before the process ended")
	} else if got := out.String(); got != "first\n" {
		t.Errorf("first output %q", got)
	}
	must(t, <-errc)
	if got := out.String(); got != "first\nsecond\n" {
		t.Errorf("output %q", got)
	}
}

func (s *suite) testStdin(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	code, out := s.run(t, e, executor.Process{Rootfs: rootfs, Stdin: strings.NewReader("hello\nworld\n"), Args: sh("cat; echo end")})
	if code != 0 || out != "hello\nworld\nend\n" {
		t.Errorf("reader: exit %d, output %q", code, out)
	}
	pr, pw, err := os.Pipe()
	must(t, err)
	fmt.Fprint(pw, "from a file\n")
	pw.Close()
	code, out = s.run(t, e, executor.Process{Rootfs: rootfs, Stdin: pr, Args: sh("cat; echo end")})
	pr.Close()
	if code != 0 || out != "from a file\nend\n" {
		t.Errorf("file: exit %d, output %q", code, out)
	}
	// No stdin: /dev/null, an immediate end of file (also without /dev in
	// the rootfs).
	start := time.Now()
	code, out = s.run(t, e, executor.Process{Rootfs: Rootfs(t, false), Args: sh("cat; echo end")})
	if code != 0 || out != "end\n" || time.Since(start) > 10*time.Second {
		t.Errorf("no stdin: exit %d, output %q after %v", code, out, time.Since(start))
	}
}

// testMissingExecutable: a command that is not there is an error (-1),
// not an exit code, and the error says what is missing.
func (s *suite) testMissingExecutable(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"/no/such/binary"}, []string{"/no/such/binary", "no such file or directory"}},
		{[]string{"nosuchcommand", "x"}, []string{"nosuchcommand", "not found"}},
	} {
		id := s.id()
		code, err := e.Run(context.Background(), executor.Process{ID: id, Rootfs: rootfs, Args: tc.args})
		if code != -1 || err == nil {
			t.Errorf("%q: Run = %d, %v; want an error", tc.args, code, err)
			continue
		}
		for _, w := range append(tc.want, id) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not say %q", tc.args, err, w)
			}
		}
	}
}

// testPathInRootfs: a command name is looked up on the process's PATH
// inside the rootfs, never on the host's.
func (s *suite) testPathInRootfs(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	must(t, os.MkdirAll(filepath.Join(rootfs, "opt/tools"), 0o755))
	must(t, os.WriteFile(filepath.Join(rootfs, "opt/tools/mytool"), []byte("#!/bin/sh\necho mytool \"$@\"\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(rootfs, "opt/tools/noexec"), []byte("#!/bin/sh\necho noexec\n"), 0o644))
	code, out := s.run(t, e, executor.Process{Rootfs: rootfs, Env: []string{"PATH=/opt/tools:/bin"}, Args: []string{"mytool", "a b"}})
	if code != 0 || out != "mytool a b\n" {
		t.Errorf("mytool: exit %d, output %q", code, out)
	}
	code, out = s.run(t, e, executor.Process{Rootfs: rootfs, Cwd: "/opt", Args: []string{"./tools/mytool", "relative"}})
	if code != 0 || out != "mytool relative\n" {
		t.Errorf("./tools/mytool in /opt: exit %d, output %q", code, out)
	}
	code, out = s.run(t, e, executor.Process{Rootfs: rootfs, Args: []string{"echo", "default PATH"}})
	if code != 0 || out != "default PATH\n" {
		t.Errorf("echo: exit %d, output %q", code, out)
	}
	if code, err := e.Run(context.Background(), executor.Process{ID: s.id(), Rootfs: rootfs, Env: []string{"PATH=/opt/tools"}, Args: []string{"noexec"}}); err == nil {
		t.Errorf("a file without x bits on PATH ran: exit %d", code)
	}
	// The host has /usr/bin/env; the rootfs has no /usr/bin.
	if _, err := os.Stat("/usr/bin/env"); err == nil {
		if code, err := e.Run(context.Background(), executor.Process{ID: s.id(), Rootfs: rootfs, Env: []string{"PATH=/usr/bin"}, Args: []string{"env"}}); err == nil {
			t.Errorf("env was found on the host's /usr/bin: exit %d", code)
		}
	}
}

// testCancel: canceling ctx ends the whole process tree, detached
// processes (own session, output closed) too, and Run returns promptly with
// an error wrapping ctx.Err().
func (s *suite) testCancel(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	m := markers(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out SyncBuffer
	errc := make(chan error, 1)
	script := fmt.Sprintf("sleep %s & setsid sleep %s & (setsid sleep %s >/dev/null 2>&1 <&- &) ; echo started; sleep %s", m[0], m[1], m[2], m[3])
	go func() {
		code, err := e.Run(ctx, executor.Process{ID: s.id(), Rootfs: rootfs, Stdout: &out, Stderr: &out, Args: sh(script)})
		if err == nil {
			err = fmt.Errorf("exit code %d, no error", code)
		}
		errc <- err
	}()
	if !waitFor(10*time.Second, func() bool { return allRunning(m) }) {
		cancel()
		t.Fatalf("the processes did not start (output %q)", out.String())
	}
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %v to return after cancel", d)
	}
	checkGone(t, m)

	// A ctx canceled before Run runs nothing.
	code, err := e.Run(ctx, executor.Process{ID: s.id(), Rootfs: rootfs, Args: sh("touch /ran")})
	if _, serr := os.Stat(filepath.Join(rootfs, "ran")); code != -1 || !errors.Is(err, context.Canceled) || serr == nil {
		t.Errorf("canceled before: Run = %d, %v (ran: %v)", code, err, serr == nil)
	}
}

// markers returns n new markers; when the test ends, processes left with
// them (after a failure) are killed.
func markers(t *testing.T, n int) []string {
	var m []string
	for i := 0; i < n; i++ {
		m = append(m, Marker())
	}
	t.Cleanup(func() {
		for _, mk := range m {
			for _, pid := range Sleeping(mk) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return m
}

// allRunning reports whether a `sleep M` runs for every marker M.
func allRunning(markers []string) bool {
	for _, m := range markers {
		if len(Sleeping(m)) == 0 {
			return false
		}
	}
	return true
}

// checkGone fails the test for every `sleep M` process left.
func checkGone(t *testing.T, markers []string) {
	t.Helper()
	for _, m := range markers {
		if pids := Sleeping(m); len(pids) > 0 {
			t.Errorf("sleep %s left running after Run returned: pids %v", m, pids)
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// testDetached: when the process ends, what it started and left running
// (in the background, in a session of its own, with its output closed) is
// ended too, as in a PID namespace, and Run returns promptly.
func (s *suite) testDetached(t *testing.T) {
	e := s.New(t)
	rootfs := s.rootfs(t)
	m := markers(t, 3)
	seen := make(chan bool, 1)
	stop := make(chan struct{})
	go func() {
		ok := waitFor(20*time.Second, func() bool {
			select {
			case <-stop:
				return true
			default:
			}
			return allRunning(m)
		})
		seen <- ok && allRunning(m)
	}()
	start := time.Now()
	// The script waits until it sees its processes run (seen from here),
	// which the test tells it through a file.
	script := fmt.Sprintf("sleep %s & setsid sleep %s & (setsid sleep %s >/dev/null 2>&1 <&- &); while [ ! -e /go ]; do sleep 0.05; done; echo done", m[0], m[1], m[2])
	var sawAll bool
	go func() {
		sawAll = <-seen
		_ = os.WriteFile(filepath.Join(rootfs, "go"), nil, 0o644)
	}()
	code, out := s.run(t, e, executor.Process{Rootfs: rootfs, Args: sh(script)})
	close(stop)
	if code != 0 || out != "done\n" {
		t.Errorf("exit %d, output %q", code, out)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Run took %v", d)
	}
	if !sawAll {
		t.Error("the detached processes were never seen running: the test tests nothing")
	}
	checkGone(t, m)
}

// testConcurrent: runs in distinct rootfs at the same time see their own
// files, and the end of one (which ends its own detached processes) does not
// end another's processes.
func (s *suite) testConcurrent(t *testing.T) {
	e := s.New(t)
	type result struct {
		code int
		out  string
		err  error
	}
	start := func(rootfs, script string) <-chan result {
		res := make(chan result, 1)
		go func() {
			var out SyncBuffer
			code, err := e.Run(context.Background(), executor.Process{ID: s.id(), Rootfs: rootfs, Args: sh(script), Stdout: &out, Stderr: &out})
			res <- result{code, out.String(), err}
		}()
		return res
	}
	// The long run: its background process must outlive the others' ends.
	long := s.rootfs(t)
	lm := markers(t, 1)[0]
	longRes := start(long, fmt.Sprintf("sleep %s & while [ ! -e /go ]; do sleep 0.05; done; kill $! && echo long-ok", lm))
	if !waitFor(10*time.Second, func() bool { return len(Sleeping(lm)) == 1 }) {
		_ = os.WriteFile(filepath.Join(long, "go"), nil, 0o644)
		t.Fatal("the long run did not start")
	}
	const n = 3
	var others []<-chan result
	ms := markers(t, n)
	for i, m := range ms {
		others = append(others, start(s.rootfs(t), fmt.Sprintf("echo run%d > /mine; sleep 0.3 & setsid sleep %s & sleep 0.3; cat /mine", i, m)))
	}
	for i, res := range others {
		r := <-res
		if want := fmt.Sprintf("run%d\n", i); r.err != nil || r.code != 0 || r.out != want {
			t.Errorf("run %d: Run = %d, %v; output %q, want %q", i, r.code, r.err, r.out, want)
		}
	}
	checkGone(t, ms)
	if len(Sleeping(lm)) != 1 {
		t.Error("the long run's background process was ended by another run")
	}
	must(t, os.WriteFile(filepath.Join(long, "go"), nil, 0o644))
	if r := <-longRes; r.err != nil || r.code != 0 || r.out != "long-ok\n" {
		t.Errorf("long run: Run = %d, %v; output %q", r.code, r.err, r.out)
	}
	checkGone(t, []string{lm})
}
