package cli

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/store"
)

// isStoreName reports whether ref names an image of the store by a name
// (NAME[:TAG] or NAME@DIGEST), not by its ID.
func isStoreName(s *store.Store, ref string) bool {
	_, ok, err := s.Lookup(ref)
	return err == nil && ok
}

func (a *app) saveCmd() *cobra.Command {
	var out, format string
	cmd := &cobra.Command{
		Use:   "save [-o FILE] IMAGE",
		Short: "Write an image to a docker-archive (or --format oci) tar file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("give the output file with -o FILE")
			}
			if format != "docker" && format != "oci" {
				return usagef("--format=%s: use docker or oci", format)
			}
			img, idx, err := a.loadIndexOrRef(cmd, args[0])
			if err == nil && idx != nil && !export.SupportsIndex(format) {
				idx = nil // a docker archive holds one platform: the host's (or --platform's)
				img, err = a.loadRef(cmd, args[0])
			}
			if err != nil {
				return err
			}
			var names []string
			if _, err := name.NewTag(args[0]); err == nil && isStoreName(a.store, args[0]) {
				names = []string{args[0]}
			}
			ex := export.Exporters(export.Env{Store: a.store})[format]
			o := export.Output{Type: format, Dest: out}
			if idx != nil {
				return ex.ExportIndex(cmd.Context(), idx, o, names)
			}
			return ex.Export(cmd.Context(), img, o, names)
		},
	}
	addPlatformFlag(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to this file")
	cmd.Flags().StringVar(&format, "format", "docker", "archive format: docker or oci")
	return cmd
}

func (a *app) pullCmd() *cobra.Command {
	return addPlatformFlag(&cobra.Command{
		Use:   "pull NAME[:TAG|@DIGEST]",
		Short: "Pull an image from a registry into the store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plat, _, err := platformFlag(cmd)
			if err != nil {
				return err
			}
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			img, err := b.Pull(cmd.Context(), args[0], plat, progress.New(a.stderr, false))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Digest: %s\n", img.Descriptor.Digest)
			return nil
		},
	})
}

func (a *app) pushCmd() *cobra.Command {
	return addPlatformFlag(&cobra.Command{
		Use:   "push NAME[:TAG] [DESTINATION]",
		Short: "Push an image (or a multi-platform image index) from the store to a registry",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, idx, err := a.loadIndexOrRef(cmd, args[0])
			if err != nil {
				return err
			}
			dst := args[0]
			if len(args) == 2 {
				dst = args[1]
			} else if !isStoreName(a.store, args[0]) {
				return usagef("%s is not a name of the image: give the DESTINATION to push it to", args[0])
			}
			if idx != nil {
				if err := export.PushIndex(cmd.Context(), a.builder.Registry, a.store, idx, dst, a.stderrf); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s: digest: %s\n", dst, idx.Descriptor.Digest)
				return nil
			}
			if err := export.Push(cmd.Context(), a.builder.Registry, a.store, img, dst, a.stderrf); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: digest: %s\n", dst, img.Descriptor.Digest)
			return nil
		},
	})
}
