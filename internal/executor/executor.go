// Package executor runs the process of a build step (a RUN) or of `strata
// run` in a prepared root filesystem. Executor is the seam: package runc
// drives an OCI runtime with a generated config.json; package chroot runs
// without mounts or namespaces, for unprivileged containers. Both pass the
// scenarios of package testsuite.
package executor

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// An Executor runs processes in root filesystems. Run returns the process's
// exit code (128+N when killed by signal N) and a nil error, even when the
// code is not 0; it returns -1 and an error only when the process could not
// be run at all. It must be safe for concurrent use with distinct IDs, and
// must leave nothing behind (container, bundle, mounts) on any path,
// including a canceled ctx.
type Executor interface {
	Run(ctx context.Context, p Process) (exitCode int, err error)
}

// A Noter is an Executor with something to say about every failed run:
// what its processes go without (see chroot.Runner).
type Noter interface {
	FailureNote() string
}

// Network modes for Process.Network.
const (
	// NetworkHost shares the host's network namespace ("" means host).
	NetworkHost = "host"
	// NetworkNone gives the process a new network namespace with only loopback.
	NetworkNone = "none"
	// NetworkPrivate gives the process a new network namespace with loopback
	// and outbound user-mode networking (slirp4netns, see package netns): it
	// can download but cannot reach the host's loopback.
	NetworkPrivate = "private"
)

// Security modes for Process.Security (BuildKit's RUN --security).
const (
	// SecuritySandbox is the default: Docker's default capabilities, seccomp
	// profile, masked and read-only /proc and /sys paths, noNewPrivileges.
	SecuritySandbox = "sandbox"
	// SecurityInsecure lifts the sandbox: every capability, no seccomp
	// profile, no masked paths, writable /sys, every device allowed
	// (BuildKit's --security=insecure, docker run --privileged).
	SecurityInsecure = "insecure"
)

// Process describes one RUN.
type Process struct {
	// ID is the container id; unique among concurrent runs of a Runner (the
	// caller makes one, e.g. "strata-" + random). Letters, digits, "_+-." only.
	ID string
	// Rootfs is the mounted root filesystem (e.g. a merged overlay); writable.
	Rootfs string
	// Args is argv (shell form already wrapped by the caller as SHELL + cmdline).
	Args []string
	// Env holds KEY=VALUE entries; PATH=DefaultPath is added when there is no PATH.
	Env []string
	// Cwd is the absolute working directory, "/" when empty. It is created in
	// Rootfs (0755, owned by the user) if missing and stays there afterwards.
	Cwd string
	// User is the Dockerfile USER value, resolved with user.LookupUser against
	// Rootfs's /etc/passwd and /etc/group.
	User string
	// Network is NetworkHost ("" means host), NetworkNone or NetworkPrivate.
	Network string
	// Hostname defaults to DefaultHostname.
	Hostname string
	// Security is SecuritySandbox ("" means sandbox) or SecurityInsecure.
	Security string
	// Stdout and Stderr receive the live output; nil discards. When they are
	// the same writer the process gets one pipe for both, so the writer sees
	// the output in the order it was written (as on a terminal).
	Stdout, Stderr io.Writer
	// Stdin is the process's standard input; nil is /dev/null (every RUN).
	Stdin io.Reader
	// Terminal gives the process a pseudo-terminal, which runc creates and
	// joins to its own stdio (Stdin, Stdout, Stderr): one of them, or
	// /dev/tty, must be a terminal, which runc puts in raw mode (and resizes
	// with it) while the process runs. Stdout then carries both output
	// streams.
	Terminal bool
	// Mounts are extra mounts (bind, tmpfs, ...) added after the default ones.
	// Their mount points are removed from Rootfs afterwards when runc had to
	// create them and they are still empty.
	Mounts []specs.Mount
}

var validID = regexp.MustCompile(`^[\w+\-.]+$`)

// Validate checks what every executor needs of p: a valid ID, a command, a
// rootfs, known network and security modes and an absolute working
// directory. The errors name the container id.
func (p *Process) Validate() error {
	if !validID.MatchString(p.ID) {
		return fmt.Errorf("run: invalid container id %q", p.ID)
	}
	if len(p.Args) == 0 {
		return fmt.Errorf("run %s: no command", p.ID)
	}
	switch p.Network {
	case "", NetworkHost, NetworkNone, NetworkPrivate:
	default:
		return fmt.Errorf("run %s: unknown network mode %q", p.ID, p.Network)
	}
	switch p.Security {
	case "", SecuritySandbox, SecurityInsecure:
	default:
		return fmt.Errorf("run %s: unknown security mode %q", p.ID, p.Security)
	}
	if p.Rootfs == "" {
		return fmt.Errorf("run %s: no rootfs", p.ID)
	}
	if cwd := p.Cwd; cwd != "" && !filepath.IsAbs(cwd) {
		return fmt.Errorf("run %s: working directory %q is not absolute", p.ID, cwd)
	}
	return nil
}

// WorkingDir is p.Cwd cleaned, "/" when empty.
func (p *Process) WorkingDir() string {
	if p.Cwd == "" {
		return "/"
	}
	return filepath.Clean(p.Cwd)
}
