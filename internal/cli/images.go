package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/inspect"
	"github.com/strata-build/strata/internal/store"
)

// loadRef finds an image in the store by name, name@digest, or the ID (config
// digest) or manifest digest, or a prefix of at least 4 hex digits of the ID.
func (a *app) loadRef(cmd *cobra.Command, ref string) (*image.Image, error) {
	b, err := a.open(cmd.Context())
	if err != nil {
		return nil, err
	}
	if im, ok, err := b.Store.Lookup(ref); err == nil && ok {
		return image.Load(b.Store, im.Descriptor.Digest)
	}
	hexRef := strings.TrimPrefix(strings.ToLower(ref), "sha256:")
	if len(hexRef) >= 4 && len(hexRef) <= 64 && isHex(hexRef) {
		imgs, err := b.Store.Images()
		if err != nil {
			return nil, err
		}
		var found *image.Image
		for _, im := range imgs {
			img, err := image.Load(b.Store, im.Descriptor.Digest)
			if err != nil {
				continue
			}
			if !strings.HasPrefix(img.Manifest.Config.Digest.Hex, hexRef) && im.Descriptor.Digest.Encoded() != hexRef {
				continue
			}
			if found != nil && found.Descriptor.Digest != img.Descriptor.Digest {
				return nil, fmt.Errorf("%w: %s is the prefix of the IDs of more than one image; give more digits", errAmbiguous, ref)
			}
			found = img
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, noSuchImage{ref: ref, root: b.Store.Root()}
}

var errAmbiguous = errors.New("ambiguous image ID")

// noSuchImage is the error for an image the store does not hold.
type noSuchImage struct{ ref, root string }

func (e noSuchImage) Error() string {
	return fmt.Sprintf("no such image: %s (not in the store %s; see 'strata images')", e.ref, e.root)
}

func isHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
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
		Aliases: []string{"ls"},
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
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE [IMAGE...]",
		Short: "Show the configuration and manifest of images",
		Long: `Show the configuration and manifest of images in the store, as docker
inspect does: a JSON array with one object per image. Id is the image ID (the
digest of the config), Config the container configuration (Env, Cmd,
Entrypoint, WorkingDir, User, Labels, ...), RootFS the layers' diffIDs, Size
the content size of the layers (the sum of what 'strata history' shows) and
Manifest the OCI image manifest.

--format takes a Go template, run once per image, with docker's functions:
json, join, split, upper, lower, title, pad, truncate (and Go's own: index,
len, printf, ...). IMAGE is a name, NAME@DIGEST, or an image ID or its prefix.`,
		Example: `  strata inspect busybox
  strata inspect --format '{{.Config.Env}}' myapp:1.0
  strata inspect -f '{{json .Config}}' myapp:1.0
  strata inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' myapp
  strata inspect -f '{{join .Config.Entrypoint " "}} {{.Architecture}}' myapp`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var tmpl *inspect.Template
			switch format {
			case "":
			case "json":
				tmpl, _ = inspect.ParseTemplate("{{json .}}")
			default:
				t, err := inspect.ParseTemplate(format)
				if err != nil {
					return usageError{err}
				}
				tmpl = t
			}
			infos := []inspect.Info{}
			var missing []string
			for _, ref := range args {
				img, err := a.loadRef(cmd, ref)
				var nsi noSuchImage
				if errors.As(err, &nsi) {
					missing = append(missing, ref)
					continue
				}
				if err != nil {
					return err
				}
				sizes, err := inspect.LayerSizes(cmd.Context(), a.store, img)
				if err != nil {
					if cmd.Context().Err() != nil {
						return err
					}
					// a broken store should not hide the config: say so, count 0
					fmt.Fprintf(a.stderr, "warning: %s: size unknown: %v\n", ref, err)
				}
				var size int64
				for _, n := range sizes {
					size += n
				}
				imgs, err := a.store.Images()
				if err != nil {
					return err
				}
				infos = append(infos, inspect.NewInfo(img, inspect.NamesOf(imgs, img), size))
			}
			var out bytes.Buffer
			if tmpl == nil {
				enc := json.NewEncoder(&out)
				enc.SetIndent("", "    ")
				enc.SetEscapeHTML(false)
				if err := enc.Encode(infos); err != nil {
					return err
				}
			} else {
				for _, info := range infos {
					if err := tmpl.Execute(&out, info); err != nil {
						return err
					}
					out.WriteByte('\n')
				}
			}
			if _, err := a.stdout.Write(out.Bytes()); err != nil {
				return err
			}
			switch len(missing) {
			case 0:
				return nil
			case 1:
				return fmt.Errorf("no such image: %s", missing[0])
			}
			return fmt.Errorf("no such images: %s", strings.Join(missing, ", "))
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format the output with a Go template (or 'json': one JSON object a line)")
	return cmd
}

// historyRow is one line of strata history; its fields are the --format
// placeholders (docker's).
type historyRow struct {
	ID           string
	CreatedSince string
	CreatedAt    string
	CreatedBy    string
	Size         string
	Comment      string
}

var historyHeader = historyRow{ID: "IMAGE", CreatedSince: "CREATED", CreatedAt: "CREATED AT", CreatedBy: "CREATED BY", Size: "SIZE", Comment: "COMMENT"}

func (a *app) historyCmd() *cobra.Command {
	var noTrunc, quiet, human bool
	var format string
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show the history of an image",
		Long: `Show the steps that made an image, newest first, as docker history does.

IMAGE is the image ID on the newest step and ` + "`<missing>`" + ` on the others (the
steps are not images of their own). SIZE is the content size of the layer the
step made (regular files and symlink targets, uncompressed); steps that changed
only the configuration (ENV, CMD, ...) show 0B. CREATED BY is shortened to 45
characters unless --no-trunc is given.

--format takes a Go template with the placeholders .ID, .CreatedSince,
.CreatedAt, .CreatedBy, .Size and .Comment; start it with "table" for aligned
columns with a header, or give "json" for one JSON object a line.`,
		Example: `  strata history myapp:1.0
  strata history --no-trunc busybox
  strata history --format '{{.Size}}\t{{.CreatedBy}}' myapp
  strata history --format 'table {{.CreatedBy}}\t{{.Size}}' myapp`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var tmpl *inspect.Template
			switch {
			case format == "json":
				tmpl, _ = inspect.ParseTemplate("{{json .}}")
			case format != "":
				t, err := inspect.ParseTemplate(format)
				if err != nil {
					return usageError{err}
				}
				tmpl = t
			}
			img, err := a.loadRef(cmd, args[0])
			if err != nil {
				return err
			}
			var sizes []int64
			if !quiet {
				if sizes, err = inspect.LayerSizes(cmd.Context(), a.store, img); err != nil {
					if cmd.Context().Err() != nil {
						return err
					}
					fmt.Fprintf(a.stderr, "warning: %s: layer sizes unknown: %v\n", args[0], err)
				}
			}
			rows := historyRows(img, sizes, time.Now(), !noTrunc, human)
			var out bytes.Buffer
			switch {
			case quiet:
				for _, r := range rows {
					fmt.Fprintln(&out, r.ID)
				}
			case tmpl != nil && !tmpl.Table:
				for _, r := range rows {
					if err := tmpl.Execute(&out, r); err != nil {
						return err
					}
					out.WriteByte('\n')
				}
			default:
				if tmpl == nil {
					tmpl, _ = inspect.ParseTemplate("table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}")
				}
				tw := tabwriter.NewWriter(&out, 0, 4, 3, ' ', 0)
				for _, r := range append([]historyRow{historyHeader}, rows...) {
					if err := tmpl.Execute(tw, r); err != nil {
						return err
					}
					fmt.Fprintln(tw)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			_, err = a.stdout.Write(out.Bytes())
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&noTrunc, "no-trunc", false, "do not shorten CREATED BY and the image ID")
	fl.BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	fl.BoolVarP(&human, "human", "H", true, "print sizes and dates in human readable format")
	fl.StringVar(&format, "format", "", "format the output with a Go template ('table ...' for columns, 'json' for JSON lines)")
	return cmd
}

// historyRows lays out img's history newest first. sizes are the layers'
// content sizes (nil: not computed, as for -q).
func historyRows(img *image.Image, sizes []int64, now time.Time, trunc, human bool) []historyRow {
	steps := inspect.Steps(&img.Config, len(img.Layers))
	id := img.Manifest.Config.Digest.String()
	if trunc {
		id = img.Manifest.Config.Digest.Hex[:12]
	}
	rows := make([]historyRow, 0, len(steps))
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		r := historyRow{ID: "<missing>", CreatedBy: inspect.OneLine(s.CreatedBy), Comment: s.Comment}
		if len(rows) == 0 {
			r.ID = id
		}
		if trunc {
			r.CreatedBy = inspect.Ellipsis(r.CreatedBy, 45)
		}
		var size int64
		if s.Layer >= 0 && s.Layer < len(sizes) {
			size = sizes[s.Layer]
		}
		if !s.Created.IsZero() {
			r.CreatedAt = s.Created.Format(time.RFC3339)
		}
		if human {
			r.CreatedSince = inspect.Since(s.Created, now)
			r.Size = inspect.HumanSize(size)
		} else {
			r.CreatedSince = r.CreatedAt
			r.Size = strconv.FormatInt(size, 10)
		}
		rows = append(rows, r)
	}
	return rows
}
