package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/store"
)

// manifestCmd is `strata manifest`: make, look at and push image indexes
// (multi-platform images) from images built or pulled apart, as docker
// buildx imagetools and manifest-tool do: e.g. join the images that
// several builders pushed by digest, one platform each.
func (a *app) manifestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Create, inspect and push multi-platform image indexes",
		Long: `Create, inspect and push image indexes (multi-platform images) from
images built or pulled apart, as 'docker buildx imagetools' and manifest-tool
do: e.g. join the images that several builders each built for one platform
and pushed by digest into one name. 'strata build --platform a,b' makes an
index in one go.`,
		Example: `  strata build --platform linux/amd64 -t app:amd64 . && strata build --platform linux/arm64 -t app:arm64 .
  strata manifest create -t registry.example/app:1 --push app:amd64 app:arm64
  strata manifest create -t app:1 registry.example/app@sha256:0a1b... registry.example/app@sha256:2c3d...
  strata manifest inspect golang:1.26`,
	}
	cmd.AddCommand(a.manifestCreateCmd(), a.manifestInspectCmd(), a.pushCmd())
	return cmd
}

func (a *app) manifestCreateCmd() *cobra.Command {
	var tags []string
	var push bool
	cmd := &cobra.Command{
		Use:   "create -t NAME [--push] SOURCE...",
		Short: "Make an image index of images (and of indexes' images) in the store, pulling those it lacks",
		Long: `Make an image index of the SOURCE images, in their order, and name it NAME
in the store (and push it with --push). A SOURCE is any image name, NAME@DIGEST
or ID: an image counts as the platform its config says; an image index
brings all its images. A SOURCE the store lacks is pulled (a NAME@DIGEST
of an image pushed by digest, say). Two images of one platform are an error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(tags) == 0 {
				return usagef("give the index a name with -t NAME")
			}
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			var imgs []*image.Image
			seen := map[string]string{}
			for _, src := range args {
				got, err := a.manifestSources(cmd, src)
				if err != nil {
					return err
				}
				for _, img := range got {
					p := platform.Format(image.PlatformOf(img))
					if first, ok := seen[p]; ok {
						return fmt.Errorf("manifest create: %s and %s are both %s images", first, src, p)
					}
					seen[p] = src
					imgs = append(imgs, img)
				}
			}
			idx, err := image.WriteIndex(b.Store, imgs)
			if err != nil {
				return err
			}
			for _, t := range tags {
				if err := b.Store.Tag(t, idx.Descriptor); err != nil {
					return err
				}
				if push {
					if err := export.PushIndex(cmd.Context(), a.builder.Registry, a.store, idx, t, a.stderrf); err != nil {
						return err
					}
				}
			}
			fmt.Fprintln(a.stdout, idx.Descriptor.Digest)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&tags, "tag", "t", nil, "name of the index (several: -t A -t B)")
	cmd.Flags().BoolVar(&push, "push", false, "push the index (and its images) to each name's registry")
	return cmd
}

// manifestSources returns the images src names: one image, or an index's
// images; pulled (every platform of an index) when the store lacks src.
func (a *app) manifestSources(cmd *cobra.Command, src string) ([]*image.Image, error) {
	im, err := a.resolveRef(cmd, src)
	var nsi noSuchImage
	if errors.As(err, &nsi) && !store.IsID(src) {
		if _, err := a.builder.ResolveImage(cmd.Context(), src, true, platform.Host(), nil); err != nil {
			return nil, fmt.Errorf("manifest create: %s: %w", src, err)
		}
		im, err = a.resolveRef(cmd, src)
		if err == nil && image.IsIndex(im.Descriptor.MediaType) {
			if err := a.pullAllPlatforms(cmd, src, im); err != nil {
				return nil, err
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if image.IsIndex(im.Descriptor.MediaType) {
		idx, err := image.LoadIndex(a.store, im.Descriptor)
		if err != nil {
			return nil, err
		}
		return idx.Images, nil
	}
	img, err := image.Load(a.store, im.Descriptor.Digest)
	if err != nil {
		return nil, err
	}
	return []*image.Image{img}, nil
}

// pullAllPlatforms pulls the image of each platform of the index src that
// the store lacks.
func (a *app) pullAllPlatforms(cmd *cobra.Command, src string, im store.Image) error {
	plats, err := image.IndexPlatforms(a.store, im.Descriptor.Digest)
	if err != nil {
		return err
	}
	for _, p := range plats {
		if _, err := a.builder.ResolveImage(cmd.Context(), src, false, p, nil); err != nil {
			return fmt.Errorf("manifest create: %s for %s: %w", src, platform.Format(p), err)
		}
	}
	return nil
}

func (a *app) manifestInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME",
		Short: "Print the image index (or image manifest) a name means: from the store, else from its registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var raw []byte
			im, err := a.resolveRef(cmd, args[0])
			var nsi noSuchImage
			switch {
			case err == nil:
				raw, err = a.store.ReadBlob(im.Descriptor.Digest)
			case errors.As(err, &nsi) && a.builder.Registry != nil:
				d, gerr := a.builder.Registry.Get(cmd.Context(), args[0])
				if gerr != nil {
					return gerr
				}
				raw, err = d.Manifest, nil
			}
			if err != nil {
				return err
			}
			var out bytes.Buffer
			if err := json.Indent(&out, raw, "", "  "); err != nil {
				return fmt.Errorf("manifest inspect %s: %w", args[0], err)
			}
			out.WriteByte('\n')
			_, err = a.stdout.Write(out.Bytes())
			return err
		},
	}
}
