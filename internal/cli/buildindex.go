package cli

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/builder"
	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
)

// checkIndexOutputs refuses what cannot hold an image index: type=docker
// and --load (Docker's image archives hold one platform, as BuildKit
// says). runBuild calls it before anything is read or built.
func checkIndexOutputs(f buildFlags, outs []export.Output) error {
	const why = "docker exporter does not currently support exporting manifest lists (build one --platform for it)"
	if f.load {
		return usagef("--load with several platforms: %s", why)
	}
	for _, o := range outs {
		if !export.SupportsIndex(o.Type) {
			return usagef("--output type=%s with several platforms: %s", o.Type, why)
		}
	}
	return nil
}

// runIndexBuild builds each of plats and writes an image index of the
// images where the outputs say (the store, named by the build's tags, by
// default): what --platform with several platforms makes.
func (a *app) runIndexBuild(ctx context.Context, b *builder.Builder, opts builder.Options, plats []v1.Platform, f buildFlags, outs []export.Output, pr *progress.Printer) error {
	started := time.Now()
	idx, err := b.BuildIndex(ctx, opts, plats)
	a.writeReport(f, opts, started, pr, nil, err)
	if err != nil || f.check {
		return err
	}
	if export.StoresImage(outs) {
		if err := b.Store.AddImage(idx.Descriptor); err != nil {
			return err
		}
	}
	for _, t := range f.tags {
		if err := b.Store.Tag(t, idx.Descriptor); err != nil {
			return err
		}
	}
	if err := a.export(ctx, b, outs, f.tags, pr, func(e export.Exporter, o export.Output, names []string) error {
		return e.ExportIndex(ctx, idx, o, names)
	}); err != nil {
		return err
	}
	if f.metadata != "" {
		if err := export.WriteIndexMetadataFile(f.metadata, idx, f.tags); err != nil {
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
