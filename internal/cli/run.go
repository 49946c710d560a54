package cli

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/container"
)

type ioReadCloser = io.ReadCloser

func (a *app) runCmd() *cobra.Command {
	var o container.Options
	var entrypoint string
	var rm bool
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Run a command in a new container from an image (always --rm)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			o.Stdout, o.Stderr = a.stdout, a.stderr
			code, err := container.Run(cmd.Context(), a.builder.Runner, a.session, img, dirs, o)
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
	fl.StringVar(&o.Network, "network", "host", "network: host or none")
	fl.StringVar(&entrypoint, "entrypoint", "", "overwrite the image's ENTRYPOINT")
	fl.BoolVar(&rm, "rm", true, "remove the container when it exits (always)")
	return cmd
}
