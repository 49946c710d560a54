// Package runc runs one Dockerfile RUN step in runc, on a root filesystem that the
// caller has already mounted (typically an overlay whose upperdir becomes the
// step's layer).
//
// Run writes an OCI runtime spec modelled on BuildKit's (see newSpec), runs
// `runc run --detach` with stdin from /dev/null (or Process.Stdin), streams
// stdout and stderr (one ordered stream when both go to one writer), waits
// for the process (`runc run` in the foreground when it uses a terminal), and on
// every path deletes the container and its bundle directory and removes the
// mount points runc had to create in the rootfs (mount stubs), so a layer
// holds only what the command itself changed. The calling process becomes a
// child subreaper (prctl PR_SET_CHILD_SUBREAPER, for the rest of its life) to
// collect the exit status; it reaps only the container processes it started
// (see "Reaping" below).
package runc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/netns"
	"github.com/strata-build/strata/internal/executor/stdio"
	"github.com/strata-build/strata/internal/executor/user"
)

// Network modes for Process.Network (see package executor).
const (
	NetworkHost    = executor.NetworkHost
	NetworkNone    = executor.NetworkNone
	NetworkPrivate = executor.NetworkPrivate
)

// Security modes for Process.Security (see package executor).
const (
	SecuritySandbox  = executor.SecuritySandbox
	SecurityInsecure = executor.SecurityInsecure
)

// Runner runs processes with the runc binary. The zero value uses "runc" from
// PATH but needs StateDir and BundleDir. A Runner holds no state of its own and
// may be used for concurrent runs (with distinct Process IDs).
type Runner struct {
	Runtime   string // runc binary; "" means "runc" from PATH
	StateDir  string // passed as `runc --root`; created (0700) if missing
	BundleDir string // parent dir for per-run bundle dirs (config.json); created (0700) if missing
	// Deletes, when set, takes the deletion of a container whose process
	// ended normally off Run's path: `runc delete` (another start of runc,
	// ~10 ms, which `runc run --detach` needs and the foreground `runc run`
	// did not) then runs in the background, tracked here, and the owner
	// waits for it (Deletes.Wait) before it exits. When nil, Run deletes
	// before it returns. A container that did not end normally is always
	// deleted before Run returns.
	Deletes *sync.WaitGroup
	// Networks, when set, hands out the private network namespaces with
	// one kept ready and takes them back to close in the background
	// (netns.Pool); its owner closes it. When nil, each run makes its own
	// in its bundle and closes it before Run returns.
	Networks *netns.Pool
}

var _ executor.Executor = (*Runner)(nil)

// network returns a private network namespace for one run and what gives
// it back: from r.Networks, else a new one in the run's bundle, closed by
// release.
func (r *Runner) network(ctx context.Context, bundle string) (*netns.NS, func() error, error) {
	if r.Networks != nil {
		ns, err := r.Networks.Get(ctx)
		if err != nil {
			return nil, nil, err
		}
		return ns, func() error { return r.Networks.Release(ns) }, nil
	}
	ns, err := netns.New(ctx, bundle)
	if err != nil {
		return nil, nil, err
	}
	return ns, ns.Close, nil
}

// Process describes one RUN (see executor.Process).
type Process = executor.Process

// killRetry is how often the cancel path retries `runc kill` while the container
// is still being created.
const killRetry = 50 * time.Millisecond

// Run executes p and waits for it. It returns the process's exit code (0 on
// success; 128+N when the process was killed by signal N) and a nil error, even
// when the exit code is not 0. It returns -1 and an error only when the container
// could not be run at all: runc missing, a bad Process, a failed user lookup, or
// runc failing to create or start the container (including an executable that
// does not exist in the rootfs).
//
// When ctx is canceled Run kills the container (SIGKILL), deletes it (`runc delete
// --force`) and returns an error wrapping ctx.Err(). On every path the container,
// its bundle directory and the mount stubs runc created in Rootfs are removed.
func (r *Runner) Run(ctx context.Context, p Process) (exitCode int, err error) {
	if err := ctx.Err(); err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	if err := p.Validate(); err != nil {
		return -1, err
	}
	dirs, runtimePath, rootfs, err := r.resolve(&p)
	if err != nil {
		return -1, err
	}
	cwd := p.WorkingDir()

	uid, gid, sgids, err := user.LookupUser(rootfs, p.User)
	if err != nil {
		return -1, fmt.Errorf("run %s: user %q: %w", p.ID, p.User, err)
	}
	if _, err := executor.MkdirAllOwned(rootfs, cwd, int(uid), int(gid)); err != nil {
		return -1, fmt.Errorf("run %s: create working directory %s: %w", p.ID, cwd, err)
	}

	bundle := filepath.Join(dirs.BundleDir, p.ID)
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return -1, fmt.Errorf("run %s: create bundle: %w", p.ID, err)
	}
	defer os.RemoveAll(bundle)

	spec, err := newSpec(&p, hostSpecInput(&p, rootfs, cwd, uid, gid, sgids))
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	if p.Network == NetworkPrivate {
		// Up before runc starts the process; gone (after the process,
		// before the bundle) on every path.
		ns, release, err := r.network(ctx, bundle)
		if err != nil {
			return -1, fmt.Errorf("run %s: %w", p.ID, err)
		}
		defer func() {
			if cerr := release(); cerr != nil && err == nil {
				exitCode, err = -1, fmt.Errorf("run %s: %w", p.ID, cerr)
			}
		}()
		joinNetwork(spec, ns.Path, ns.ResolvConf)
	}
	dests := make([]string, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		dests = append(dests, m.Destination)
	}
	stubs := recordMountStubs(rootfs, dests)
	defer func() {
		if cerr := stubs.clean(); cerr != nil && err == nil {
			exitCode, err = -1, fmt.Errorf("run %s: %w", p.ID, cerr)
		}
	}()

	cfg, err := json.Marshal(spec)
	if err != nil {
		return -1, fmt.Errorf("run %s: encode spec: %w", p.ID, err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o600); err != nil {
		return -1, fmt.Errorf("run %s: write spec: %w", p.ID, err)
	}

	return dirs.runc(ctx, runtimePath, bundle, &p)
}

// hostSpecInput is what the spec of p needs to know of the host and of
// the user p runs as.
func hostSpecInput(p *Process, rootfs, cwd string, uid, gid uint32, sgids []uint32) specInput {
	in := specInput{
		rootfs:         rootfs,
		uid:            uid,
		gid:            gid,
		additionalGids: sgids,
		cwd:            cwd,
		nofile:         nofileLimit(),
		cgroupNS:       cgroupNSSupported(),
		seccomp:        seccompSupported(),
	}
	in.userNS = userns.RunningInUserNS()
	in.bindSys = in.userNS && (p.Network == "" || p.Network == NetworkHost) && netNSForeign()
	if p.Security == SecurityInsecure && !in.userNS {
		in.freeLoop = freeLoopID()
	}
	return in
}

// resolve makes the paths of a run absolute: the runner's state and bundle
// directories (created when missing; runc runs with the bundle as its
// working directory), the runtime binary and the rootfs.
func (r *Runner) resolve(p *Process) (dirs *Runner, runtimePath, rootfs string, err error) {
	if r.StateDir == "" || r.BundleDir == "" {
		return nil, "", "", fmt.Errorf("run %s: runner needs StateDir and BundleDir", p.ID)
	}
	rootfs, err = filepath.Abs(p.Rootfs)
	if err != nil {
		return nil, "", "", fmt.Errorf("run %s: rootfs: %w", p.ID, err)
	}
	if st, err := os.Stat(rootfs); err != nil || !st.IsDir() {
		return nil, "", "", fmt.Errorf("run %s: rootfs %s is not a directory: %w", p.ID, rootfs, errOr(err, syscall.ENOTDIR))
	}
	runtime := r.Runtime
	if runtime == "" {
		runtime = "runc"
	}
	runtimePath, err = exec.LookPath(runtime)
	if err != nil {
		return nil, "", "", fmt.Errorf("run %s: find runtime: %w", p.ID, err)
	}
	// runc runs with the bundle as its working directory: use absolute paths.
	d := *r
	dirs = &d
	for _, d := range []*string{&dirs.StateDir, &dirs.BundleDir} {
		if *d, err = filepath.Abs(*d); err != nil {
			return nil, "", "", fmt.Errorf("run %s: %w", p.ID, err)
		}
		if err := os.MkdirAll(*d, 0o700); err != nil {
			return nil, "", "", fmt.Errorf("run %s: %w", p.ID, err)
		}
	}

	return dirs, runtimePath, rootfs, nil
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// runc runs the container and handles cancellation and cleanup.
//
// It uses `runc run --detach`: runc then hands its own stdout and stderr to
// the process instead of copying each from a pipe of its own (which, read
// by two goroutines in runc, reorders a process's stdout and stderr lines).
// A writer given as both Stdout and Stderr thus gets one pipe, read by one
// reader, in the order the process wrote. The process outlives `runc run
// --detach`; strata is a child subreaper, so the process becomes its child
// and its exit status is collected here.
//
// Long: starting runc, handing over and closing the stdio pipes, adopting
// and reaping the process and deleting the container are one ordered
// sequence whose order is the correctness argument; split up it would be
// harder to check.
func (r *Runner) runc(ctx context.Context, runtimePath, bundle string, p *Process) (int, error) {
	if p.Terminal || stdio.IsTerminal(p.Stdin) {
		return r.runForeground(ctx, runtimePath, bundle, p)
	}
	// The container's process is runc's child; when runc exits it is
	// reparented to the nearest subreaper: strata. First, so that failing
	// here leaves nothing to release.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("run %s: become a child subreaper: %w", p.ID, err)
	}
	logPath := filepath.Join(bundle, "runc.log")
	pidPath := filepath.Join(bundle, "init.pid")
	cmd := exec.Command(runtimePath,
		"--root", r.StateDir,
		"--log", logPath, "--log-format", "json",
		"run", "--detach", "--pid-file", pidPath, "--bundle", bundle, p.ID)
	cmd.Dir = bundle
	// runc hands its stdin to the process: a file, not a copy that
	// exec.Cmd.Wait would wait for after runc has exited.
	stdin, closeStdin, err := stdio.InputFile(p.Stdin)
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	defer closeStdin()
	if stdin != nil {
		cmd.Stdin = stdin // else /dev/null (not a nil *os.File: no fd 0 at all)
	}
	out, err := stdio.NewOutput(p.Stdout, p.Stderr)
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	defer out.Wait(stdio.Drain)
	defer out.CloseWriters()
	// A nil *os.File in an io.Writer field would leave the descriptor
	// closed; a nil io.Writer is /dev/null.
	stdout, stderr := out.Files()
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	// Own process group: a Ctrl-C on strata's terminal must not reach runc (or the
	// container) directly; cancellation goes through ctx.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	out.CloseWriters() // the child has its copies: the pipes end when the process closes them
	closeStdin()
	if err != nil {
		return -1, fmt.Errorf("run %s: start runc: %w", p.ID, err)
	}
	// `runc run --detach` exits once the process runs; anything left
	// (a stopped container, a failed start, cancellation) is deleted here,
	// after the process is reaped: now, or in the background (Deletes)
	// when the process ended normally.
	deleteNow := true
	defer func() {
		if deleteNow {
			r.forceDelete(runtimePath, p.ID)
		}
	}()

	killed, waitErr := r.waitRunc(ctx, cmd, runtimePath, p.ID)
	var init *os.Process
	if waitErr == nil {
		// runc wrote the pid file and left the process to strata.
		init = adopt(readPid(pidPath), 0)
	}
	if init == nil {
		// runc failed, was killed or canceled; it reaps what it started when
		// it fails, but not when it is killed.
		r.reapOrphan(p.ID, killed)
		if waitErr == nil {
			waitErr = fmt.Errorf("no process of strata's in %s", pidPath)
		}
		return -1, runcFailure(ctx, p.ID, logPath, waitErr)
	}
	// On cancellation kill the process (the init of its PID namespace: the
	// kernel kills the rest).
	st, err := waitProcess(ctx, init)
	if ctx.Err() != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, ctx.Err())
	}
	if err != nil {
		return -1, fmt.Errorf("run %s: wait for the process: %w", p.ID, err)
	}
	code, ok := executor.ExitCode(st.Sys().(syscall.WaitStatus))
	if !ok {
		return -1, fmt.Errorf("run %s: process ended with %v", p.ID, st)
	}
	if r.Deletes != nil {
		deleteNow = false
		r.Deletes.Add(1)
		go func() {
			defer r.Deletes.Done()
			r.forceDelete(runtimePath, p.ID)
		}()
	}
	return code, nil
}

// runcFailure is Run's error when runc did not run the process to its end:
// ctx's error when the run was canceled, else runc's own error messages,
// else how runc ended (err, e.g. killed by a signal).
func runcFailure(ctx context.Context, id, logPath string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("run %s: %w", id, ctx.Err())
	}
	if msg := runcError(logPath); msg != "" {
		return fmt.Errorf("run %s: runc: %s", id, msg)
	}
	return fmt.Errorf("run %s: runc: %w", id, err)
}

// kill sends SIGKILL to the container until that works or runc exits. `runc
// kill` fails while the container is still being created, so it is retried.
// If runc has not exited some seconds after a successful kill, runc itself is
// killed so Run can return (reapOrphan and forceDelete clean up after it). It
// is killed through its pidfd (os.Process): not by pid, which names another
// process once runc is reaped, nor by process group, which a foreground runc
// shares with strata. It returns the container's init as runc's state
// recorded it when a kill reached it (runc may remove that record before
// strata reaps the init: see reapOrphan).
func (r *Runner) kill(done <-chan struct{}, runtimePath, id string, runcProc *os.Process) initRecord {
	giveUp := time.After(5 * time.Second)
	var init initRecord
	for {
		// `runc kill` needs runc's state; reading it first also records
		// the init a kill reaches.
		if init = r.readInit(id); init.Start != 0 {
			kctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := exec.CommandContext(kctx, runtimePath, "--root", r.StateDir, "kill", id, "KILL").Run()
			cancel()
			if err == nil {
				break
			}
		}
		select {
		case <-done:
			return initRecord{}
		case <-giveUp:
			_ = runcProc.Kill()
			return initRecord{}
		case <-time.After(killRetry):
		}
	}
	select {
	case <-done:
	case <-giveUp:
		_ = runcProc.Kill()
	}
	return init
}

// forceDelete runs `runc delete --force` when runc still has state for id.
func (r *Runner) forceDelete(runtimePath, id string) {
	if _, err := os.Stat(filepath.Join(r.StateDir, id)); err != nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = exec.CommandContext(dctx, runtimePath, "--root", r.StateDir, "delete", "--force", id).Run()
}

// runcError returns the error-level messages from runc's JSON log, or "".
func runcError(logPath string) string {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	var msgs []string
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(s.Bytes(), &entry) != nil {
			continue
		}
		if entry.Level == "error" || entry.Level == "fatal" {
			msgs = append(msgs, entry.Msg)
		}
	}
	return strings.Join(msgs, "; ")
}

// waitRunc waits for the started runc command; when ctx ends first, the
// container is killed (runc kill, then runc itself) so that Wait returns,
// and the init the kill reached is returned too (for reapOrphan).
func (r *Runner) waitRunc(ctx context.Context, cmd *exec.Cmd, runtimePath, id string) (initRecord, error) {
	done := make(chan struct{})
	killed := make(chan struct{})
	var init initRecord
	go func() {
		defer close(killed)
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		init = r.kill(done, runtimePath, id, cmd.Process)
	}()
	err := cmd.Wait()
	close(done)
	<-killed
	return init, err
}
