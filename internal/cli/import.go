package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/build"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
)

func (a *app) importCmd() *cobra.Command {
	var changes []string
	var message string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] FILE|DIR [NAME[:TAG]]",
		Short: "Create an image from a rootfs tarball or directory",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			b, err := a.open(ctx)
			if err != nil {
				return err
			}
			src := args[0]
			fi, err := os.Stat(src)
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			w, err := b.Store.NewBlobWriter()
			if err != nil {
				return err
			}
			defer w.Close()
			now := time.Now().UTC().Truncate(time.Second)
			var epoch *time.Time
			if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return usagef("SOURCE_DATE_EPOCH=%q: must be a number of seconds since 1970", v)
				}
				t := time.Unix(n, 0).UTC()
				epoch, now = &t, t
			}
			var blob layer.Blob
			if fi.IsDir() {
				blob, err = layer.Commit(ctx, src, w, layer.Gzip, layer.DiffOptions{Epoch: epoch})
			} else {
				f, ferr := os.Open(src)
				if ferr != nil {
					return fmt.Errorf("import: %w", ferr)
				}
				defer f.Close()
				r, derr := layer.Decompress(f)
				if derr != nil {
					return fmt.Errorf("import %s: %w", src, derr)
				}
				defer r.Close()
				blob, err = layer.Compress(ctx, r, w, layer.Gzip)
			}
			if err != nil {
				return fmt.Errorf("import %s: %w", src, err)
			}
			if _, _, err := w.Commit(blob.Digest); err != nil {
				return err
			}
			plat := build.HostPlatform()
			cfg := v1.ConfigFile{OS: plat.OS, Architecture: plat.Architecture, Variant: plat.Variant, Created: v1.Time{Time: now}}
			if message == "" {
				message = "Imported from " + filepath.Base(src)
			}
			cfg.History = []v1.History{{Created: v1.Time{Time: now}, CreatedBy: "strata import", Comment: message}}
			if err := build.ApplyChanges(&cfg, changes); err != nil {
				return err
			}
			img, err := image.Write(b.Store, cfg, []image.Layer{{Digest: blob.Digest, DiffID: blob.DiffID, Size: blob.Size, MediaType: blob.MediaType}})
			if err != nil {
				return err
			}
			if len(args) == 2 {
				if err := b.Store.Tag(args[1], img.Descriptor); err != nil {
					return err
				}
			} else if err := b.Store.AddImage(img.Descriptor); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, img.Manifest.Config.Digest)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&changes, "change", "c", nil, "apply a Dockerfile instruction to the image config")
	cmd.Flags().StringVarP(&message, "message", "m", "", "commit message for the image history")
	return cmd
}
