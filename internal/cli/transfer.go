package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/build"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/progress"
)

// push pushes img to ref, reporting its progress with logf.
func (a *app) push(ctx context.Context, b *build.Builder, img *image.Image, ref string, logf func(format string, a ...any)) error {
	v, err := img.V1(b.Store)
	if err != nil {
		return err
	}
	logf("pushing %s", ref)
	start := time.Now()
	var last time.Time
	var lastDone, lastTotal int64
	report := func(done, total int64) {
		secs := time.Since(start).Seconds()
		logf("  pushed %.1f MB of %.1f MB (%.1f MB/s)", float64(done)/(1<<20), float64(total)/(1<<20), float64(done)/(1<<20)/max(secs, 0.001))
	}
	err = b.Registry.PushProgress(ctx, ref, v, func(done, total int64) {
		lastDone, lastTotal = done, total
		if time.Since(last) >= time.Second {
			last = time.Now()
			report(done, total)
		}
	})
	if err == nil && lastTotal > 0 {
		report(lastDone, lastTotal)
	}
	return err
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
			img, err := a.loadRef(cmd, args[0])
			if err != nil {
				return err
			}
			var names []string
			if _, err := name.NewTag(args[0]); err == nil {
				names = []string{args[0]}
			}
			return writeArchive(output{typ: format, dest: out}, a.builder, img, names)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to this file")
	cmd.Flags().StringVar(&format, "format", "docker", "archive format: docker or oci")
	return cmd
}

func (a *app) loadCmd() *cobra.Command {
	var in string
	cmd := &cobra.Command{
		Use:   "load -i FILE",
		Short: "Load images from a docker-archive tar file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return usagef("give the archive with -i FILE")
			}
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			m, err := tarball.LoadManifest(func() (ioReadCloser, error) { return os.Open(in) })
			if err != nil {
				return fmt.Errorf("load %s: %w", in, err)
			}
			for _, desc := range m {
				tags := desc.RepoTags
				var tag *name.Tag
				if len(tags) > 0 {
					t, err := name.NewTag(tags[0])
					if err != nil {
						return err
					}
					tag = &t
				}
				vimg, err := tarball.Image(func() (ioReadCloser, error) { return os.Open(in) }, tag)
				if err != nil {
					return fmt.Errorf("load %s: %w", in, err)
				}
				img, err := image.Import(cmd.Context(), b.Store, vimg)
				if err != nil {
					return err
				}
				for _, t := range tags {
					if err := b.Store.Tag(t, img.Descriptor); err != nil {
						return err
					}
					fmt.Fprintf(a.stdout, "Loaded image: %s\n", t)
				}
				if len(tags) == 0 {
					fmt.Fprintf(a.stdout, "Loaded image ID: %s\n", img.Manifest.Config.Digest)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&in, "input", "i", "", "read from this tar archive")
	return cmd
}

func (a *app) pullCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pull NAME[:TAG|@DIGEST]",
		Short: "Pull an image from a registry into the store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			img, err := b.Pull(cmd.Context(), args[0], build.HostPlatform(), progress.New(a.stderr, false))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Digest: %s\n", img.Descriptor.Digest)
			return nil
		},
	}
}

func (a *app) pushCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "push NAME[:TAG] [DESTINATION]",
		Short: "Push an image from the store to a registry",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := a.loadRef(cmd, args[0])
			if err != nil {
				return err
			}
			dst := args[0]
			if len(args) == 2 {
				dst = args[1]
			}
			if err := a.push(cmd.Context(), a.builder, img, dst, a.stderrf); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: digest: %s\n", dst, img.Descriptor.Digest)
			return nil
		},
	}
}
