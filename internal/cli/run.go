package cli

import (
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/container"
)

func (a *app) runCmd() *cobra.Command {
	var o container.Options
	var entrypoint string
	var volumes []string
	var rm, interactive bool
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Run a command in a new container from an image (always --rm)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := container.CheckNetwork(o.Network); err != nil {
				return usageError{err}
			}
			if o.Name != "" {
				if err := container.CheckName(o.Name); err != nil {
					return usageError{err}
				}
			}
			o.Mounts = nil
			for _, v := range volumes {
				m, err := container.ParseVolume(v)
				if err != nil {
					return usagef("-v: %v", err)
				}
				o.Mounts = append(o.Mounts, m)
			}
			img, err := a.loadRef(cmd, args[0])
			if err != nil {
				return err
			}
			dirs, err := a.builder.LayerDirs(cmd.Context(), img)
			if err != nil {
				return err
			}
			o.Args = args[1:]
			if cmd.Flags().Changed("entrypoint") {
				ep := []string{}
				if entrypoint != "" {
					ep = []string{entrypoint} // one program, as docker run takes it
				}
				o.Entrypoint = &ep
			}
			if interactive {
				o.Stdin = a.stdin
			}
			o.Stdout, o.Stderr = a.stdout, a.stderr
			code, err := container.Run(cmd.Context(), a.store, a.builder.Runner, a.session, a.builder.Snapshots, img, dirs, o)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.StringArrayVarP(&o.Env, "env", "e", nil, "set environment variables")
	fl.StringVarP(&o.User, "user", "u", "", "user (name|uid[:group|gid])")
	fl.StringVarP(&o.Workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVar(&o.Network, "network", "host", "network: host or none (only loopback)")
	fl.BoolVar(&o.Privileged, "privileged", false, "lift the sandbox: all capabilities, no seccomp profile, no masked paths, all devices")
	fl.StringVar(&entrypoint, "entrypoint", "", "overwrite the image's ENTRYPOINT")
	fl.BoolVarP(&interactive, "interactive", "i", false, "pass stdin through to the container")
	fl.BoolVarP(&o.TTY, "tty", "t", false, "give the container a terminal (strata's own must be one)")
	fl.StringArrayVarP(&volumes, "volume", "v", nil, "bind mount a host directory: HOST-DIR:CONTAINER-DIR[:ro]")
	fl.StringVar(&o.Name, "name", "", "name the container (no two of a store run with one name)")
	fl.BoolVar(&rm, "rm", true, "remove the container when it exits (always)")
	return addPlatformFlag(cmd)
}
