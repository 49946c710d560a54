package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/archive"
	"github.com/strata-build/strata/internal/platform"
)

func (a *app) loadCmd() *cobra.Command {
	var in string
	cmd := &cobra.Command{
		Use:   "load -i FILE",
		Short: "Load images from a docker-archive or OCI layout tar file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return usagef("give the archive with -i FILE")
			}
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			loaded, err := archive.Load(cmd.Context(), b.Store, in, platform.Host())
			if err != nil {
				return err
			}
			for _, l := range loaded {
				for _, w := range l.Warnings {
					fmt.Fprintf(a.stderr, "warning: %s: %s\n", in, w)
				}
				for _, t := range l.Tags {
					fmt.Fprintf(a.stdout, "Loaded image: %s\n", t)
				}
				if len(l.Tags) == 0 {
					fmt.Fprintf(a.stdout, "Loaded image ID: %s\n", l.Image.Manifest.Config.Digest)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&in, "input", "i", "", "read from this tar archive")
	return cmd
}
