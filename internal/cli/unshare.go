package cli

import (
	"errors"
	"os"
	"os/exec"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/isolation"
)

func (a *app) unshareCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "unshare [COMMAND [ARG...]]",
		Short: "Run a command in strata's user namespace (rootless mode)",
		Long: `Run a command (default: $SHELL, else /bin/sh) as root of the user namespace
that rootless strata builds in, as podman unshare does. Files in a rootless
store belong to your subordinate uids, which only that namespace may remove:
  strata unshare rm -rf ~/.local/share/strata
As root (rootful mode) the command runs as it is.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.mode == isolation.Rootless && !a.inside {
				return usagef("unshare: not in strata's user namespace") // isolate re-runs rootless commands inside it
			}
			if len(args) == 0 {
				sh := os.Getenv("SHELL")
				if sh == "" {
					sh = "/bin/sh"
				}
				args = []string{sh}
			}
			// Not tied to the command's context: an interactive program
			// handles its own Ctrl-C.
			c := exec.Command(args[0], args[1:]...)
			c.Stdin, c.Stdout, c.Stderr = a.stdin, a.stdout, a.stderr
			err := c.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return passedExit{128 + int(ws.Signal())}
				}
				return passedExit{ee.ExitCode()}
			}
			return err
		},
	}
	cmd.Flags().SetInterspersed(false) // flags after COMMAND are its own
	return cmd
}
