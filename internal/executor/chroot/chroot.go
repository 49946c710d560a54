// Package chroot runs a RUN step without an OCI runtime, for strata inside
// an unprivileged container (a Kubernetes pod or `docker run` with Docker's
// default capabilities and seccomp profile), where there is no user
// namespace and no mount(2), so that runc cannot run. The command is started
// with chroot(2) into the rootfs (a plain directory, as the native
// snapshotter makes), as the USER's uid, gid and supplementary groups, in a
// session of its own, with the executable looked up on the process's PATH
// inside the rootfs.
//
// What it isolates: the root directory, and the user a RUN runs as. That
// is all. There are no namespaces: the RUN shares strata's PID, network,
// mount, IPC, UTS and cgroup namespaces, so it uses the host's (the
// container's) network (Network "none" and "private" are refused: they need
// a network namespace), has the host's hostname (Process.Hostname is not
// applied) and can signal processes outside the rootfs by pid. Nothing is
// mounted. The RUN sees the host's (the container's) /proc and /sys, and
// /dev/fd, /dev/stdin, /dev/stdout and /dev/stderr, through package
// procview: a seccomp filter whose listener, the run's init, answers the
// RUN's open, stat, access and readlink calls on those paths from the
// host's (so /proc/self/exe, /proc/cpuinfo and ps work; /proc lists every
// process of the container). Where no seccomp listener can be installed,
// the RUN has none of them (Runner.Warn says why, once). It has no
// /dev/pts, /dev/shm or /dev/mqueue unless the rootfs has them as plain
// directories; Process.Mounts are emulated (see Mounts below), and a
// terminal (Process.Terminal) is refused.
// Capabilities and the seccomp filter are strata's own (the container's):
// a root RUN keeps every capability strata has, and Security "insecure"
// runs the same as "sandbox". The view's filter needs no_new_privs, so
// setuid and file-capability programs gain nothing (sudo in a USER's RUN
// fails). chroot is no security boundary against a root process that holds
// CAP_SYS_CHROOT (Docker's default set has it), nor is the host's /proc
// (/proc/PID/root leads out): the container around strata is the
// boundary, and this isolation is for Dockerfiles one trusts. There are no
// resource limits of its own.
//
// A RUN gets what runc would give it where that needs no mount, and the
// layer keeps only what the command changed:
//
//   - /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom and
//     /dev/tty are made with mknod(2) (CAP_MKNOD, Docker's default set has
//     it) when the rootfs lacks them, and removed afterwards, with /dev when
//     it had to be made. Where mknod is not permitted (no CAP_MKNOD, a user
//     namespace) or a node cannot be opened (a nodev filesystem), the run
//     goes without it and Runner.Warn says so once. Without /dev/null, a
//     shell cannot start a background job ("cmd &"), and a "> /dev/null"
//     where the rootfs has /dev writes a regular file into the layer.
//   - /etc/resolv.conf and /etc/hosts are copies of the host's when the
//     rootfs has none (where the rootfs's one is a symlink to a missing
//     file, the file it names), removed afterwards; a rootfs's own files are
//     used as they are and never rewritten.
//   - What the command did not change is left exactly as it was: entries
//     made for the run are removed only while they are still the ones made
//     (same inode and birth time), directories only when empty, and the
//     times of the directories they were made in are restored.
//
// Mounts: Process.Mounts (RUN --mount, a heredoc's script at /dev/pipes,
// `strata run -v`) are made without mount(2), in order, each at its
// destination resolved inside the rootfs as runc resolves it, with the
// directories it needs made for the run. What is at a mount point is moved
// out of the rootfs for the run (to a directory beside the rootfs, or where
// none is on its filesystem, a hidden one at its root) and put back
// afterwards, the same inode with its times: the command does not see it,
// and the layer does not hold it. A mount whose source holds the rootfs is
// refused.
//
//   - A read-only bind of a directory (the build context, a stage, the
//     heredoc's /dev/pipes) is a copy (owners, modes, xattrs, times, hard
//     links inside it), removed afterwards. The copy costs what copying
//     costs, on every run: a context of 5,000 files of 1 KiB takes 0.1 s
//     on tmpfs, 1.3 s where creating a file costs 0.2 ms (this project's
//     test machine; a run without mounts takes 6 ms). Nothing makes it
//     read-only (root ignores modes, and chattr +i needs a capability a
//     container does not have): a write into it succeeds, where a real
//     mount fails with EROFS, and is lost. Hard links would be cheaper,
//     but a write in place would change the source (a layer).
//   - A writable bind of a directory (a cache, a bind with rw, a volume of
//     strata run) is hard links to the source's files (copies where they
//     are on another filesystem), so that a write in place writes the
//     source's file at once; afterwards what the command made, replaced or
//     removed there is merged into the source (see mount.merge): 5,000
//     files take 0.07-0.1 s. A file the command made reaches the source
//     when the run ends, not while it runs. Runs that use one source at
//     the same time (a cache with sharing=shared) each see its tree as it
//     was when they started, with the files' contents shared, and the
//     merges keep the changes of both, the later winning where both
//     changed a path.
//   - A tmpfs is an empty directory (mode 1777, or its mode=, uid= and
//     gid= options), removed afterwards; size= is not enforced.
//   - A read-only bind of a file (a secret) is a copy, emptied and removed
//     afterwards on every path (the command failed, the run was canceled),
//     so that no name the command gave it keeps the data either.
//   - A bind of a socket (an ssh agent) or a writable bind of a file is a
//     hard link to it; a socket on another filesystem is proxied.
//
// Unlike a real mount point, the command can remove, move or replace a
// mount point (EBUSY on a real one), and link a file from a mount into the
// rootfs or back (EXDEV). A cache whose mount point the command removed is
// left empty, as `rm -rf` leaves a real one; what the command moved out of
// a mount stays in the layer; and a file it linked between a cache and the
// rootfs is given copies, so that a cache never shares a file with a
// layer. The mount options nosuid, nodev and noexec are not applied, and
// df shows the rootfs's filesystem. When strata is killed during a run,
// the mounts' copies stay in the rootfs (the snapshot is thrown away with
// its session).
//
// Processes: each run has an init process, this program started again (see
// IsInit and Init). It enters the rootfs and the working directory as root
// (a USER may start in a directory it cannot search, as with runc), then
// starts the command, and it is a child subreaper: every process the
// command starts stays below it however it detaches (background, setsid,
// double fork), because an orphan is reparented to its nearest subreaper.
// When the command ends, when the run is canceled, or when strata dies, the
// init kills (SIGKILL) and reaps every process below it before it reports,
// as the end of a PID namespace does. Runs in distinct rootfs (concurrent
// ones too) each have their own init and cannot end each other's processes.
// (Strata itself cannot find a run's processes reliably: in a pod, without
// CAP_SYS_PTRACE, root may not read /proc/PID/root of a process of another
// uid, and setsid leaves the session.) Only a process that kills the init,
// or an init that is killed (e.g. by the OOM killer), leaves processes
// behind; when strata is killed, what it added to the rootfs stays (the
// snapshot is thrown away with its session).
package chroot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/user"
)

// Runner runs processes with chroot isolation. The zero value works in a
// program whose main calls Init (see IsInit). A Runner may be used for
// concurrent runs; use it by pointer.
type Runner struct {
	// Program is the executable started as each run's init: a program
	// that calls Init first thing when IsInit is true. "" means this
	// program itself (/proc/self/exe).
	Program string
	// Warn, when set, is called once per Runner and cause, with a message
	// that says what and why: the first time a run has to go without
	// device nodes the rootfs lacks (e.g. no CAP_MKNOD), and the first time
	// a run has to go without the host's /proc and /sys (procview: no
	// seccomp listener).
	Warn func(msg string)

	warnOnce sync.Once
	noView   atomic.Pointer[string] // why a run went without procview
}

var _ executor.Executor = (*Runner)(nil)

// Run runs p and waits for it and every process it started. It returns
// the process's exit code (128+N when signal N killed it) and a nil error,
// also when the code is not 0; -1 and an error when the process could not
// be run: a bad Process, a mode chroot isolation does not have (see
// supported), a mount it cannot make (see planMounts), an unknown user, a
// missing executable, or a failed start. When ctx is canceled, every
// process of the run is killed (SIGKILL) and reaped, and the error wraps
// ctx.Err(). On every path what Run added to the rootfs is removed, and
// its mounts are taken away (see the package documentation); an error
// doing so (a cache that could not be merged) is Run's error.
func (r *Runner) Run(ctx context.Context, p executor.Process) (exitCode int, err error) {
	if err := ctx.Err(); err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	if err := p.Validate(); err != nil {
		return -1, err
	}
	if err := supported(&p); err != nil {
		return -1, err
	}
	mounts, err := planMounts(p.Mounts)
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	rootfs, err := resolveRootfs(p.Rootfs)
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	uid, gid, groups, err := user.LookupUser(rootfs, p.User)
	if err != nil {
		return -1, fmt.Errorf("run %s: user %q: %w", p.ID, p.User, err)
	}
	cwd := p.WorkingDir()
	if _, err := executor.MkdirAllOwned(rootfs, cwd, int(uid), int(gid)); err != nil {
		return -1, fmt.Errorf("run %s: create working directory %s: %w", p.ID, cwd, err)
	}
	env := withHome(executor.WithDefaultPath(p.Env), rootfs, uid)

	adds, err := prepare(ctx, rootfs, mounts)
	defer func() {
		if cerr := adds.remove(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			exitCode, err = -1, fmt.Errorf("run %s: %w", p.ID, cerr)
		}
	}()
	if err != nil {
		return -1, fmt.Errorf("run %s: %w", p.ID, err)
	}
	r.warnMissing(adds)
	// The executable may be in a mount (a heredoc's script in /dev/pipes).
	path, err := lookPath(rootfs, cwd, p.Args[0], env)
	if err != nil {
		return -1, fmt.Errorf("run %s: exec: %q: %w", p.ID, p.Args[0], err)
	}

	code, err := r.start(ctx, &p, &initConfig{
		Rootfs: rootfs,
		Path:   path,
		Args:   p.Args,
		Env:    env,
		Dir:    cwd,
		UID:    uid,
		GID:    gid,
		Groups: groups,
	})
	return code, err
}

// FailureNote says what a process that failed went without, which may be
// why (see executor.Noter).
func (r *Runner) FailureNote() string {
	if r.noView.Load() != nil {
		return "chroot isolation gives RUN no /proc, /sys or /dev/pts here (nothing can be mounted, and no seccomp listener installed); programs that need them fail, e.g. go without GOROOT set, java, ps"
	}
	return "chroot isolation gives RUN the container's /proc and /sys (no PID namespace), no /dev/pts or /dev/shm, and no_new_privs (setuid programs gain nothing)"
}

// lostView records that a run went without procview, and warns once.
func (r *Runner) lostView(why string) {
	if r.noView.CompareAndSwap(nil, &why) && r.Warn != nil {
		r.Warn("chroot isolation: RUN steps have no /proc or /sys: " + why)
	}
}

// supported refuses what chroot isolation cannot give: a network namespace,
// a terminal.
func supported(p *executor.Process) error {
	switch p.Network {
	case executor.NetworkNone, executor.NetworkPrivate:
		return fmt.Errorf("run %s: network mode %q needs a network namespace, which chroot isolation cannot create", p.ID, p.Network)
	}
	if p.Terminal {
		return fmt.Errorf("run %s: chroot isolation cannot give the process a terminal", p.ID)
	}
	return nil
}

// resolveRootfs returns the absolute path of the rootfs directory with
// symlinks resolved; it is never "/" (that would be no isolation, and
// the host's own /dev and /etc).
func resolveRootfs(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	rootfs, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	st, err := os.Stat(rootfs)
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("rootfs %s is not a directory: %w", rootfs, syscall.ENOTDIR)
	}
	if rootfs == "/" {
		return "", fmt.Errorf("rootfs %s is the host's root directory", dir)
	}
	return rootfs, nil
}

// withHome adds HOME, as runc does, when env has none: the user's home
// directory from the rootfs's /etc/passwd, else "/".
func withHome(env []string, rootfs string, uid uint32) []string {
	if slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "HOME=") }) {
		return env
	}
	return append(slices.Clip(env), "HOME="+user.Home(rootfs, uid))
}

// warnMissing calls r.Warn, once, when a run goes without device nodes.
func (r *Runner) warnMissing(a *additions) {
	if r.Warn == nil || len(a.missing) == 0 {
		return
	}
	r.warnOnce.Do(func() {
		r.Warn("chroot isolation: RUN steps go without the device nodes their image lacks: " + a.missingNodes())
	})
}
