package cli

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/builder"
	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
)

// checkIndexOutputs refuses, before anything is built, what a build of
// several platforms cannot write yet: only the store holds its image
// index for now. --load cannot be (Docker's image archives hold one
// platform, as BuildKit says).
func checkIndexOutputs(f buildFlags, outs []export.Output) error {
	if f.load {
		return usagef("--load with several platforms: docker exporter does not currently support exporting manifest lists (build one --platform to load it)")
	}
	for _, o := range outs {
		if o.Type != "image" || o.Push {
			return usagef("--output type=%s with several platforms: not supported yet (the store keeps the image index; build each platform alone for this output)", o.Type)
		}
	}
	if f.metadata != "" || f.report != "" {
		return usagef("--metadata-file and --report with several platforms: not supported yet")
	}
	return nil
}

// runIndexBuild builds each of plats and keeps an image index of the
// images in the store, named by the build's tags: what --platform with
// several platforms makes.
func (a *app) runIndexBuild(ctx context.Context, b *builder.Builder, opts builder.Options, plats []v1.Platform, f buildFlags, outs []export.Output, pr *progress.Printer) error {
	if err := checkIndexOutputs(f, outs); err != nil {
		return err
	}
	idx, err := b.BuildIndex(ctx, opts, plats)
	if err != nil || f.check {
		return err
	}
	if err := b.Store.AddImage(idx.Descriptor); err != nil {
		return err
	}
	for _, t := range f.tags {
		if err := b.Store.Tag(t, idx.Descriptor); err != nil {
			return err
		}
	}
	if f.iidfile != "" {
		if err := export.WriteIDFile(f.iidfile, idx.Descriptor.Digest); err != nil {
			return err
		}
	}
	if f.quiet {
		fmt.Fprintln(a.stdout, idx.Descriptor.Digest)
		return nil
	}
	for i, img := range idx.Images {
		pr.Logf("image for %s: %s (manifest %s)", platform.Format(plats[i]), img.Manifest.Config.Digest, img.Descriptor.Digest)
	}
	pr.Logf("writing image index %s done", idx.Descriptor.Digest)
	for _, t := range f.tags {
		pr.Logf("naming to %s done", t)
	}
	return nil
}
