package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// result is one timed command.
type result struct {
	ok     bool
	secs   float64
	ownKB  int64    // peak RSS of the process itself (VmHWM sampled from /proc), when sampled
	treeKB int64    // ru_maxrss from wait4: the largest process of the tree (as /usr/bin/time %M)
	busy   float64  // CPU busy share of the machine just before the command
	cpu    cpuTimes // the machine's CPU time spent while the command ran (all processes)
	log    string   // where its output went
	err    string
}

func fail(msg string) result { return result{err: msg} }

// cmdSpec is a command to run with its output sent to a log file.
type cmdSpec struct {
	argv    []string
	env     []string // added to the harness's environment
	dir     string
	log     string // output file (appended)
	sample  bool   // sample the process's own VmHWM
	timeout time.Duration
	stdin   io.Reader
	user    *benchUser // run as this ordinary user (nil: as the harness, root)
}

// runCmd runs spec, timing it from start to exit. The command gets its own
// process group; on timeout or Ctrl-C the group gets SIGINT, then SIGKILL.
func runCmd(ctx context.Context, spec cmdSpec) result {
	res := result{log: spec.log}
	if spec.timeout <= 0 {
		spec.timeout = 15 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, spec.timeout)
	defer cancel()
	var out io.Writer = io.Discard
	if spec.log != "" {
		if err := os.MkdirAll(filepath.Dir(spec.log), 0o755); err != nil {
			return fail(err.Error())
		}
		f, err := os.OpenFile(spec.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fail(err.Error())
		}
		defer f.Close()
		fmt.Fprintf(f, "$ %s\n", strings.Join(spec.argv, " "))
		out = f
	}
	cmd := exec.CommandContext(ctx, spec.argv[0], spec.argv[1:]...)
	cmd.Env = append(os.Environ(), spec.env...)
	cmd.Dir = spec.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Stdin = spec.stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if spec.user != nil {
		spec.user.apply(cmd)
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	cpu0 := readCPUTimes()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fail(err.Error())
	}
	var peak *peakSampler
	if spec.sample {
		peak = samplePeak(cmd.Process.Pid)
	}
	err := cmd.Wait()
	res.secs = time.Since(start).Seconds()
	res.cpu = readCPUTimes().sub(cpu0)
	res.ownKB = peak.stop()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
		res.treeKB = ru.Maxrss
	}
	if err != nil {
		res.err = err.Error()
		if ctx.Err() == context.DeadlineExceeded {
			res.err = "timeout after " + spec.timeout.String()
		}
		if out != io.Discard {
			fmt.Fprintf(out, "bench: FAILED: %s\n", res.err)
		}
		return res
	}
	if out != io.Discard {
		fmt.Fprintf(out, "bench: %.3fs (machine CPU: %s)\n", res.secs, res.cpu)
	}
	res.ok = true
	return res
}

// peakSampler reads a process's VmHWM until stopped.
type peakSampler struct {
	wg   sync.WaitGroup
	done chan struct{}
	own  int64
}

// samplePeak starts sampling the peak resident set of pid. VmHWM is the
// kernel's own high-water mark, so a read at any time after the peak finds
// it: fast reads catch short commands, then slow ones: reading 200 times a
// second through a whole build takes CPU from the build being timed, and
// only strata is sampled (the daemons are not).
func samplePeak(pid int) *peakSampler {
	ps := &peakSampler{done: make(chan struct{})}
	ps.wg.Add(1)
	go func() {
		defer ps.wg.Done()
		path := fmt.Sprintf("/proc/%d/status", pid)
		for start := time.Now(); ; {
			if kb := vmHWM(path); kb > ps.own {
				ps.own = kb
			}
			wait := 5 * time.Millisecond
			if time.Since(start) > 250*time.Millisecond {
				wait = 100 * time.Millisecond
			}
			select {
			case <-ps.done:
				return
			case <-time.After(wait):
			}
		}
	}()
	return ps
}

// stop ends the sampling and returns the peak in kB (0 for a nil sampler).
func (ps *peakSampler) stop() int64 {
	if ps == nil {
		return 0
	}
	close(ps.done)
	ps.wg.Wait()
	return ps.own
}

// vmHWM reads the peak resident set (kB) from a /proc/PID/status file. A
// zombie has no VmHWM line: 0.
func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// must runs an untimed preparation command and turns failure into an error
// that names the log.
func must(ctx context.Context, spec cmdSpec) error {
	if spec.timeout == 0 {
		spec.timeout = 20 * time.Minute
	}
	r := runCmd(ctx, spec)
	if !r.ok {
		return fmt.Errorf("%s: %s (log %s)", strings.Join(spec.argv, " "), r.err, spec.log)
	}
	return nil
}

// output runs a short command and returns its combined output.
func output(argv ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, _ := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return strings.TrimSpace(string(b))
}

// daemon is a long-running process the harness started.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func startDaemon(name, log string, env []string, user *benchUser, argv ...string) (*daemon, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if user != nil {
		user.apply(cmd)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(d.done) }()
	logf("started %s (pid %d)", name, cmd.Process.Pid)
	return d, nil
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the daemon's PID, waits, then SIGKILLs it.
func (d *daemon) stop(grace time.Duration) {
	if d == nil || d.exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		logf("%s (pid %d) did not stop in %s: SIGKILL", d.name, d.cmd.Process.Pid, grace)
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	logf("stopped %s (pid %d)", d.name, d.cmd.Process.Pid)
}

// waitFor polls check until it succeeds, the daemon exits, or the timeout.
func waitFor(d *daemon, timeout time.Duration, check func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if check() {
			return nil
		}
		if d != nil && d.exited() {
			return fmt.Errorf("%s exited", d.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", d.name, timeout)
}

func httpOK(url string) bool {
	c := http.Client{Timeout: time.Second}
	r, err := c.Get(url)
	if err != nil {
		return false
	}
	r.Body.Close()
	return r.StatusCode == 200
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder unmounts everything at or below dir (mounts the harness's
// builders made there) and reports what it had to unmount.
func unmountUnder(dir string) []string {
	var did []string
	for pass := 0; pass < 3; pass++ {
		mps := mountsUnder(dir)
		if len(mps) == 0 {
			break
		}
		for _, mp := range mps {
			if err := syscall.Unmount(mp, 0); err != nil {
				_ = syscall.Unmount(mp, syscall.MNT_DETACH)
			}
			did = append(did, mp)
		}
	}
	return did
}

// removeTree unmounts what is below dir and removes it.
func removeTree(dir string) error {
	if dir == "" || dir == "/" {
		return fmt.Errorf("refusing to remove %q", dir)
	}
	if mps := unmountUnder(dir); len(mps) > 0 {
		logf("unmounted %d leftover mount(s) under %s (first: %s)", len(mps), dir, mps[len(mps)-1])
	}
	return os.RemoveAll(dir)
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

// cpuTimes is the machine's CPU time from the first line of /proc/stat, in
// seconds summed over all CPUs: busy (user, nice, system, irq, softirq),
// idle, iowait and steal (time the hypervisor gave to others).
type cpuTimes struct {
	busy, idle, iowait, steal float64
}

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{busy: c.busy - o.busy, idle: c.idle - o.idle, iowait: c.iowait - o.iowait, steal: c.steal - o.steal}
}

func (c cpuTimes) String() string {
	return fmt.Sprintf("%.1fs busy, %.1fs iowait, %.1fs steal", c.busy, c.iowait, c.steal)
}

// readCPUTimes reads the machine's CPU times (zero when /proc/stat cannot be read).
func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	var v [8]float64
	for i := range v {
		if i+1 < len(f) {
			n, _ := strconv.ParseFloat(f[i+1], 64)
			v[i] = n / clockTicks
		}
	}
	// user nice system idle iowait irq softirq steal
	return cpuTimes{busy: v[0] + v[1] + v[2] + v[5] + v[6], idle: v[3], iowait: v[4], steal: v[7]}
}

// clockTicks is USER_HZ, the unit of /proc/stat: 100 on every Linux architecture Go supports.
const clockTicks = 100
