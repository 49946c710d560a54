package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/builder"
	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/chroot"
	"github.com/strata-build/strata/internal/executor/netns"
	"github.com/strata-build/strata/internal/executor/runc"
	"github.com/strata-build/strata/internal/isolation"
	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/userns"
)

// storeFree reports whether a command never opens the store: it runs
// where it is called, in any isolation mode.
func storeFree(name string) bool {
	switch name {
	case "version", "info", "completion", "docs", "help", "strata",
		cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
		return true
	}
	return false
}

// isolate picks the isolation mode before a command runs (--isolation, else
// $STRATA_ISOLATION, else what the process may do) and, for a rootless mode
// outside strata's user namespace, runs the whole command again inside one
// and returns its exit code as a passedExit.
func (a *app) isolate(ctx context.Context, cmd *cobra.Command) error {
	if a.isolationFlag == "" {
		a.isolationFlag = os.Getenv(isolation.Env)
	}
	mode, err := isolation.Parse(a.isolationFlag)
	if err != nil {
		return usagef("--isolation: %v", err)
	}
	if mode == isolation.Auto {
		mode = isolation.Detect(a.inside)
	}
	a.mode = mode
	if mode != isolation.Rootless || a.inside || storeFree(cmd.Name()) {
		return nil
	}
	if os.Geteuid() == 0 {
		return usagef("--isolation=rootless is for an ordinary user; as root use rootful (or chroot where nothing can be mounted)")
	}
	m, err := userns.Check()
	if err != nil {
		return err
	}
	// The inner strata is uid 0 of its namespace: give it the user's
	// defaults, not root's, as flags (a later one on the command line is
	// the same value), so that its own children inherit nothing.
	args := append([]string{"--root", a.root, "--config", a.configPath, "--isolation", string(isolation.Rootless)}, a.args...)
	code, err := userns.Run(ctx, m, args)
	if err != nil {
		return err
	}
	return passedExit{code}
}

// defaultNetwork is the network of a RUN without --network: a private
// namespace with user-mode networking; the host's in chroot mode, which
// cannot make namespaces, and (said once on stderr) in rootless mode when
// slirp4netns cannot work here, e.g. /dev/net/tun closed to the user.
func (a *app) defaultNetwork() string {
	mode, why := a.runNetwork()
	if mode == executor.NetworkHost && a.mode == isolation.Rootless {
		a.stderrf("WARNING: RUN uses the host's network: %v", why)
	}
	return mode
}

// runNetwork is the network of a RUN without --network (see
// defaultNetwork) and what keeps the private one from working here, if
// anything does.
func (a *app) runNetwork() (string, error) {
	if a.mode == isolation.Chroot {
		return executor.NetworkHost, errors.New("chroot isolation makes no namespaces")
	}
	err := netns.Available()
	if err != nil && a.mode == isolation.Rootless {
		return executor.NetworkHost, err
	}
	return executor.NetworkPrivate, err
}

// snapshotterName is the snapshotter the mode asks for ("" is overlay):
// $STRATA_SNAPSHOTTER, else native in chroot mode.
func (a *app) snapshotterName() string {
	if name := os.Getenv(builder.SnapshotterEnv); name != "" || a.mode != isolation.Chroot {
		return name
	}
	return "native"
}

// snapshotter is the builder's snapshotter for the mode, working in dir:
// $STRATA_SNAPSHOTTER, else native in chroot mode (nothing can be mounted
// there) and overlay otherwise, but native (said once on stderr) when a
// rootless overlay mount fails here (kernel < 5.11, a filesystem that
// refuses it).
func (a *app) snapshotter(ctx context.Context, dir string) (snapshot.Snapshotter, error) {
	name := a.snapshotterName()
	if a.mode == isolation.Chroot && name == "overlay" {
		return nil, fmt.Errorf("%s=overlay: chroot isolation cannot mount; use native", builder.SnapshotterEnv)
	}
	s, err := builder.NewSnapshotter(name, dir)
	if err != nil || name != "" || a.mode != isolation.Rootless {
		return s, err
	}
	sn, err := s.Prepare(ctx, nil)
	if err != nil {
		a.stderrf("WARNING: native snapshots (copies, slower): overlay cannot be mounted here: %v", err)
		return builder.NewSnapshotter("native", dir)
	}
	return s, sn.Remove()
}

func (a *app) infoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show how strata builds here: isolation, store, configuration",
		Long: `Show how strata builds on this machine: the isolation mode (--isolation;
rootful, rootless or chroot, and what it uses), the store and the registry
configuration file, the snapshotter and the default network of RUN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			snap := a.snapshotterName()
			if snap == "" {
				snap = "overlay"
			}
			net, why := a.runNetwork()
			if why != nil {
				net += " (" + why.Error() + ")"
			}
			_, err := fmt.Fprintf(a.stdout, "strata %s\nisolation: %s\nstore: %s\nconfig: %s\nsnapshotter: %s\nRUN network: %s\n",
				Version, a.describeIsolation(), a.root, a.configPath, snap, net)
			return err
		},
	}
}

// executor runs RUN steps and `strata run` for the mode: runc, but in
// chroot mode the chroot executor (runc cannot run where nothing can be
// mounted), which says once on stderr what a RUN goes without.
func (a *app) executor(runc *runc.Runner) executor.Executor {
	if a.mode != isolation.Chroot {
		return runc
	}
	return &chroot.Runner{Warn: func(msg string) { a.stderrf("WARNING: %s", msg) }}
}

// xattrFlavour is how layers unpacked in this mode mark opaque
// directories (see store.CheckFlavour).
func (a *app) xattrFlavour() string {
	if a.mode == isolation.Rootful && !isolation.InUserNamespace() {
		return "trusted"
	}
	return "user"
}

// passedExit is the exit code of the inner strata (rootless mode), which
// has reported its own errors.
type passedExit struct{ code int }

func (e passedExit) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// describeIsolation is the isolation line of `strata version` and the
// build report.
func (a *app) describeIsolation() string {
	switch a.mode {
	case isolation.Rootless:
		m, err := userns.CurrentMapping()
		if a.inside {
			m, err = userns.InsideMapping()
		}
		if err != nil {
			return fmt.Sprintf("rootless (unavailable: %v)", err)
		}
		return fmt.Sprintf("rootless (user namespace, uids %s; overlay snapshots, runc)", m)
	case isolation.Chroot:
		return "chroot (no user namespace or mount allowed: native snapshots, RUN in a chroot, the container's network)"
	case isolation.Rootful:
		if isolation.InUserNamespace() {
			return "rootful (root of a user namespace; overlay snapshots, runc)"
		}
		return "rootful (overlay snapshots, runc)"
	}
	return string(a.mode)
}
