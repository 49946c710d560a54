package cli

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/human"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/inspect"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/store"
)

// loadRef finds an image in the store as docker does wherever a command
// names one: by name, NAME@DIGEST, ID (config digest) or manifest digest, or
// a prefix of at least 4 hex digits of the ID (see store.Resolve).
// Where the name is a multi-platform image index, the image is the one
// for --platform (see platformFlag).
func (a *app) loadRef(cmd *cobra.Command, ref string) (*image.Image, error) {
	im, err := a.resolveRef(cmd, ref)
	if err != nil {
		return nil, err
	}
	plat, _, err := platformFlag(cmd)
	if err != nil {
		return nil, err
	}
	return image.LoadFor(a.store, im.Descriptor, plat)
}

// loadIndexOrRef is loadRef, except that a name of an image index without
// --platform gives the whole index (idx, with img nil): what push and save
// write.
func (a *app) loadIndexOrRef(cmd *cobra.Command, ref string) (img *image.Image, idx *image.Index, err error) {
	im, err := a.resolveRef(cmd, ref)
	if err != nil {
		return nil, nil, err
	}
	if _, given, err := platformFlag(cmd); err != nil || given || !image.IsIndex(im.Descriptor.MediaType) {
		img, err := a.loadRef(cmd, ref)
		return img, nil, err
	}
	idx, err = image.LoadIndex(a.store, im.Descriptor)
	return nil, idx, err
}

// resolveRef finds the store's entry ref names (see loadRef): an image
// manifest or an image index.
func (a *app) resolveRef(cmd *cobra.Command, ref string) (store.Image, error) {
	b, err := a.open(cmd.Context())
	if err != nil {
		return store.Image{}, err
	}
	im, err := b.Store.Resolve(ref)
	if errors.Is(err, store.ErrNoSuchImage) {
		return store.Image{}, noSuchImage{ref: ref, root: b.Store.Root()}
	}
	return im, err
}

// platformFlag is the platform a command's --platform gives (given: it was
// given), else the host's: which image of a multi-platform index the
// command means.
func platformFlag(cmd *cobra.Command) (p v1.Platform, given bool, err error) {
	f := cmd.Flags().Lookup("platform")
	if f == nil || f.Value.String() == "" {
		return platform.Host(), false, nil
	}
	if p, err = platform.Parse(f.Value.String()); err != nil {
		return v1.Platform{}, false, usagef("--platform=%s: %v", f.Value.String(), err)
	}
	return p, true, nil
}

// addPlatformFlag gives cmd --platform (see platformFlag).
func addPlatformFlag(cmd *cobra.Command) *cobra.Command {
	cmd.Flags().String("platform", "", "the platform's image when the name is a multi-platform image index (default: the host's)")
	return cmd
}

// noSuchImage is the error for an image the store does not hold.
type noSuchImage struct{ ref, root string }

func (e noSuchImage) Error() string {
	return fmt.Sprintf("no such image: %s (not in the store %s; see 'strata images -a')", e.ref, e.root)
}

func (a *app) imagesCmd() *cobra.Command {
	var quiet, all bool
	var filters []string
	cmd := &cobra.Command{
		Use:     "images",
		Aliases: []string{"ls"},
		Short:   "List images in the store",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dangling, err := danglingFilter(filters)
			if err != nil {
				return err
			}
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			imgs, err := b.Store.AllImages()
			if err != nil {
				return err
			}
			var out bytes.Buffer
			tw := tabwriter.NewWriter(&out, 0, 4, 3, ' ', 0)
			if !quiet {
				fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			}
			now := time.Now()
			for _, im := range imgs {
				untagged := im.Name == ""
				switch {
				case dangling != nil && *dangling != untagged:
					continue
				case dangling == nil && untagged && !all:
					continue // as docker images: only with -a or --filter dangling=true
				}
				img, err := image.LoadFor(b.Store, im.Descriptor, platform.Host())
				if err != nil {
					fmt.Fprintf(a.stderr, "warning: %s: %v\n", imageLabel(im), err)
					continue
				}
				id := img.Manifest.Config.Digest.Hex[:12]
				if image.IsIndex(im.Descriptor.MediaType) {
					id = im.Descriptor.Digest.Encoded()[:12] // an index's ID is its own digest
				}
				if quiet {
					fmt.Fprintln(tw, id)
					continue
				}
				size, err := inspect.ImageSize(cmd.Context(), b.Store, img)
				if err != nil {
					if cmd.Context().Err() != nil {
						return err
					}
					fmt.Fprintf(a.stderr, "warning: %s: size unknown: %v\n", imageLabel(im), err)
				}
				repo, tag := "<none>", "<none>"
				if !untagged {
					repo, tag = splitName(store.FamiliarName(im.Name))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo, tag, id, human.Since(img.Config.Created.Time, now), human.Size(size))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err = a.stdout.Write(out.Bytes())
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	fl.BoolVarP(&all, "all", "a", false, "show all images, untagged (dangling) ones too")
	fl.StringArrayVarP(&filters, "filter", "f", nil, "only show images that match: dangling=true|false")
	return cmd
}

// danglingFilter reads --filter dangling=BOOL, the filter strata images
// knows; nil when not given.
func danglingFilter(filters []string) (*bool, error) {
	var dangling *bool
	for _, f := range filters {
		k, v, _ := strings.Cut(f, "=")
		if k != "dangling" {
			return nil, usagef("--filter %s: only dangling=true|false is supported", f)
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, usagef("--filter %s: give dangling=true or dangling=false", f)
		}
		dangling = &b
	}
	return dangling, nil
}

// imageLabel names an image of the store in messages: its familiar name,
// or its manifest digest when it has none.
func imageLabel(im store.Image) string {
	if im.Name == "" {
		return im.Descriptor.Digest.String()
	}
	return store.FamiliarName(im.Name)
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

func (a *app) tagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE TARGET_IMAGE",
		Short: "Give an image in the store another name",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			im, err := a.resolveRef(cmd, args[0]) // an index stays one
			if err != nil {
				return err
			}
			return a.store.Tag(args[1], im.Descriptor)
		},
	}
}

func (a *app) rmiCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove images (or image names) from the store",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			var errs []error
			for _, ref := range args {
				if err := a.removeImage(b.Store, ref, force); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image given by ID even when it has several names")
	return cmd
}

// removeImage is rmi of one image (store.RemoveRef), printed as docker does.
func (a *app) removeImage(s *store.Store, ref string, force bool) error {
	r, err := s.RemoveRef(ref, force)
	for _, n := range r.Untagged {
		fmt.Fprintf(a.stdout, "Untagged: %s\n", store.FamiliarName(n))
	}
	if r.Deleted != "" {
		fmt.Fprintf(a.stdout, "Deleted: %s\n", r.Deleted)
	}
	if errors.Is(err, store.ErrNoSuchImage) {
		return fmt.Errorf("no such image: %s", ref)
	}
	return err
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
				size, err := inspect.ImageSize(cmd.Context(), a.store, img)
				if err != nil {
					if cmd.Context().Err() != nil {
						return err
					}
					// a broken store should not hide the config: say so
					fmt.Fprintf(a.stderr, "warning: %s: size unknown: %v\n", ref, err)
				}
				imgs, err := a.store.Images()
				if err != nil {
					return err
				}
				infos = append(infos, inspect.NewInfo(img, inspect.NamesOf(imgs, img), size))
			}
			var out bytes.Buffer
			if err := inspect.WriteInfos(&out, infos, tmpl); err != nil {
				return err
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
	return addPlatformFlag(cmd)
}

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
			rows := inspect.HistoryRows(img, sizes, time.Now(), !noTrunc, human)
			var out bytes.Buffer
			if err := inspect.WriteHistory(&out, rows, tmpl, quiet); err != nil {
				return err
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
	return addPlatformFlag(cmd)
}
