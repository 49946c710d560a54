package cli

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/archive"
	"github.com/strata-build/strata/internal/builder"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
)

func (a *app) importCmd() *cobra.Command {
	var changes []string
	var message, platFlag string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] FILE|DIR [NAME[:TAG]]",
		Short: "Create an image from a rootfs tarball or directory",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			epoch, err := image.EpochFromEnv()
			if err != nil {
				return usageError{err}
			}
			plat := platform.Host()
			if platFlag != "" {
				if plat, err = platform.Parse(platFlag); err != nil {
					return usagef("--platform=%s: %v", platFlag, err)
				}
			}
			opts := archive.ImportOptions{
				Platform: plat,
				Epoch:    epoch,
				Message:  message,
				Change:   func(cfg *v1.ConfigFile) error { return builder.ApplyChanges(cfg, changes) },
			}
			if len(args) == 2 {
				opts.Name = args[1]
			}
			img, err := archive.Import(cmd.Context(), b.Store, args[0], opts)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, img.Manifest.Config.Digest)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&changes, "change", "c", nil, "apply a Dockerfile instruction to the image config")
	cmd.Flags().StringVarP(&message, "message", "m", "", "commit message for the image history")
	cmd.Flags().StringVar(&platFlag, "platform", "", "platform of the image, e.g. linux/arm64 (default: the host's)")
	return cmd
}
