// Package container runs an image like `docker run --rm`: a throwaway
// snapshot of its layers, the config's entrypoint, cmd, env,
// working directory and user, in runc; with stdin passed through (-i), a
// terminal (-t), bind mounts (-v), a name and a network mode.
//
// A named container holds an exclusive flock on ROOT/containers/NAME.lock
// while it runs, so a second container of that name fails at once and the
// name is free again when the process ends, however it ends.
package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/store"
)

// Options override the image config for one run.
type Options struct {
	Args       []string // replace Cmd (or, with Entrypoint set, follow it)
	Entrypoint *[]string
	Env        []string // extra KEY=VALUE
	User       string
	Workdir    string
	Network    string // executor.NetworkHost ("" too) or executor.NetworkNone
	// Privileged lifts the sandbox every process gets (docker run
	// --privileged): executor.SecurityInsecure.
	Privileged bool
	// Name names the container (docker run --name): the runc container id
	// ends in it, and no two containers of a store run with one name.
	Name string
	// Mounts are extra mounts, as ParseVolume makes them.
	Mounts []specs.Mount
	// Stdin is passed through to the process (docker run -i); nil: none.
	Stdin io.Reader
	// TTY gives the process a terminal (docker run -t), joined to Stdin
	// (or /dev/null) and Stdout; see executor.Process.Terminal.
	TTY    bool
	Stdout io.Writer
	Stderr io.Writer
}

// validName is docker's rule for container names.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// CheckName reports whether name can name a container, as docker decides.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least 2 characters", name)
	}
	return nil
}

// CheckNetwork reports whether the network mode is one strata runs
// containers in (what RUN supports: the host's network, or none).
func CheckNetwork(mode string) error {
	switch mode {
	case "", executor.NetworkHost, executor.NetworkNone:
		return nil
	}
	return fmt.Errorf("network %q is not supported: use host or none", mode)
}

// ParseVolume reads docker run's -v HOST:CONTAINER[:OPTIONS] as a bind
// mount. HOST must be an absolute path that exists (docker would create a
// missing one; named volumes are not supported), CONTAINER an absolute
// path other than /. OPTIONS are comma-separated: ro or rw, a propagation
// mode (rprivate, the default, private, rshared, shared, rslave, slave),
// and z or Z (SELinux relabeling, which strata does not do: accepted and
// ignored).
func ParseVolume(v string) (specs.Mount, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return specs.Mount{}, fmt.Errorf("volume %q: want HOST-DIR:CONTAINER-DIR[:OPTIONS]", v)
	}
	host, dst := parts[0], parts[1]
	if !filepath.IsAbs(host) {
		return specs.Mount{}, fmt.Errorf("volume %q: the host path %q is not absolute (named volumes are not supported)", v, host)
	}
	if _, err := os.Stat(host); err != nil {
		return specs.Mount{}, fmt.Errorf("volume %q: host path: %w", v, err)
	}
	if !path.IsAbs(dst) || path.Clean(dst) == "/" {
		return specs.Mount{}, fmt.Errorf("volume %q: the container path %q must be absolute and not /", v, dst)
	}
	mode, propagation := "rw", "rprivate"
	if len(parts) == 3 {
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro", "rw":
				mode = o
			case "private", "rprivate", "shared", "rshared", "slave", "rslave":
				propagation = o
			case "z", "Z":
			default:
				return specs.Mount{}, fmt.Errorf("volume %q: unknown option %q (use ro, rw, a propagation mode, z or Z)", v, o)
			}
		}
	}
	return specs.Mount{
		Destination: path.Clean(dst),
		Type:        "bind",
		Source:      filepath.Clean(host),
		Options:     []string{"rbind", mode, propagation},
	}, nil
}

// lockName takes the name for this process; the returned function frees it.
func lockName(s *store.Store, name string) (func(), error) {
	dir := s.Path("containers")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("container name: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("container name: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("the container name %q is already in use by another strata run; choose another name, or wait until it ends", name)
		}
		return nil, fmt.Errorf("container name: %w", err)
	}
	return func() { f.Close() }, nil
}

// Run runs img with layer dirs (bottom first) in a throwaway snapshot that
// snaps prepares, and returns the exit code.
func Run(ctx context.Context, s *store.Store, runner executor.Executor, se *store.Session, snaps snapshot.Snapshotter, img *image.Image, dirs []string, o Options) (int, error) {
	if err := CheckNetwork(o.Network); err != nil {
		return -1, err
	}
	if o.TTY && o.Stdin != nil {
		if f, ok := o.Stdin.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
			return -1, errors.New("the input device is not a TTY: -t with -i needs a terminal as stdin (leave out -t to pass stdin as it is)")
		}
	}
	id := se.ContainerID("run")
	if o.Name != "" {
		if err := CheckName(o.Name); err != nil {
			return -1, err
		}
		unlock, err := lockName(s, o.Name)
		if err != nil {
			return -1, err
		}
		defer unlock()
		// strata-SESSION-...: reclaimed like every container of a dead strata
		id = se.ContainerID(o.Name)
	}
	cfg := img.Config.Config
	ep := cfg.Entrypoint
	if o.Entrypoint != nil {
		ep = *o.Entrypoint
	}
	cmd := cfg.Cmd
	if o.Entrypoint != nil {
		cmd = nil
	}
	if len(o.Args) > 0 {
		cmd = o.Args
	}
	argv := append(append([]string{}, ep...), cmd...)
	if len(argv) == 0 {
		return -1, fmt.Errorf("no command specified: the image has no ENTRYPOINT or CMD")
	}
	snap, err := snaps.Prepare(ctx, dirs)
	if err != nil {
		return -1, fmt.Errorf("container rootfs: %w", err)
	}
	defer snap.Remove()
	user := cfg.User
	if o.User != "" {
		user = o.User
	}
	wd := cfg.WorkingDir
	if o.Workdir != "" {
		wd = o.Workdir
	}
	security := executor.SecuritySandbox
	if o.Privileged {
		security = executor.SecurityInsecure
	}
	return runner.Run(ctx, executor.Process{
		ID:       id,
		Security: security,
		Rootfs:   snap.Root(),
		Args:     argv,
		Env:      append(append([]string{}, cfg.Env...), o.Env...),
		Cwd:      wd,
		User:     user,
		Network:  o.Network,
		Mounts:   o.Mounts,
		Stdin:    o.Stdin,
		Terminal: o.TTY,
		Stdout:   o.Stdout,
		Stderr:   o.Stderr,
	})
}
