package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/store"
)

// loadRef finds an image in the store by name, name@digest, or (a prefix of) its ID.
func (a *app) loadRef(cmd *cobra.Command, ref string) (*image.Image, error) {
	b, err := a.open(cmd.Context())
	if err != nil {
		return nil, err
	}
	if im, ok, err := b.Store.Lookup(ref); err == nil && ok {
		return image.Load(b.Store, im.Descriptor.Digest)
	}
	imgs, err := b.Store.Images()
	if err != nil {
		return nil, err
	}
	for _, im := range imgs {
		img, err := image.Load(b.Store, im.Descriptor.Digest)
		if err != nil {
			continue
		}
		id := img.Manifest.Config.Digest.Hex
		if len(ref) >= 4 && (ref == id[:min(len(ref), len(id))] || ref == "sha256:"+id[:min(len(ref)-7, len(id))]) {
			return img, nil
		}
	}
	return nil, fmt.Errorf("image %q not found in the store %s", ref, b.Store.Root())
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2fGB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fkB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func (a *app) imagesCmd() *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:     "images",
		Aliases: []string{"image ls", "ls"},
		Short:   "List images in the store",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			imgs, err := b.Store.Images()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 3, ' ', 0)
			if !quiet {
				fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			}
			for _, im := range imgs {
				img, err := image.Load(b.Store, im.Descriptor.Digest)
				if err != nil {
					fmt.Fprintf(a.stderr, "warning: %s: %v\n", im.Name, err)
					continue
				}
				id := img.Manifest.Config.Digest.Hex[:12]
				if quiet {
					fmt.Fprintln(tw, id)
					continue
				}
				var size int64
				for _, l := range img.Layers {
					size += l.Size
				}
				repo, tag := splitName(store.FamiliarName(im.Name))
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo, tag, id, ago(img.Config.Created.Time), humanSize(size))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	return cmd
}

func splitName(n string) (string, string) {
	for i := len(n) - 1; i >= 0; i-- {
		switch n[i] {
		case ':':
			return n[:i], n[i+1:]
		case '/':
			return n, "<none>"
		}
	}
	return n, "<none>"
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "Less than a minute ago"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

func (a *app) tagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE TARGET_IMAGE",
		Short: "Give an image in the store another name",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := a.loadRef(cmd, args[0])
			if err != nil {
				return err
			}
			return a.store.Tag(args[1], img.Descriptor)
		},
	}
}

func (a *app) rmiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rmi IMAGE [IMAGE...]",
		Short: "Remove image names from the store",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			for _, n := range args {
				ok, err := b.Store.Untag(n)
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("no such image: %s", n)
				}
				c, _ := store.CanonicalName(n)
				fmt.Fprintf(a.stdout, "Untagged: %s\n", store.FamiliarName(c))
			}
			return nil
		},
	}
}

func (a *app) inspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show an image's manifest and config as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := a.loadRef(cmd, args[0])
			if err != nil {
				return err
			}
			out := map[string]any{
				"Id":       img.Manifest.Config.Digest.String(),
				"Digest":   img.Descriptor.Digest.String(),
				"Manifest": img.Manifest,
				"Config":   img.Config,
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode([]any{out})
		},
	}
}

func (a *app) historyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "history IMAGE",
		Short: "Show the history of an image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := a.loadRef(cmd, args[0])
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "CREATED\tCREATED BY\tSIZE\tCOMMENT")
			li := len(img.Layers) - 1
			h := img.Config.History
			for i := len(h) - 1; i >= 0; i-- {
				size := "0B"
				if !h[i].EmptyLayer && li >= 0 {
					size = humanSize(img.Layers[li].Size)
					li--
				}
				by := h[i].CreatedBy
				if len(by) > 60 {
					by = by[:57] + "..."
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ago(h[i].Created.Time), by, size, h[i].Comment)
			}
			return tw.Flush()
		},
	}
}
