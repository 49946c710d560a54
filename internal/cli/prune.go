package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/gc"
	"github.com/strata-build/strata/internal/human"
)

func (a *app) duCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "du",
		Short: "Show the disk usage of the store and the build cache",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			ix, err := cache.Open(b.Store.Path("cache"))
			if err != nil {
				return err
			}
			r, err := gc.DiskUsage(b.Store, ix)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "TYPE\tCOUNT\tSIZE")
			row := func(name string, n int, bytes int64) {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", name, n, human.Size(bytes))
			}
			row("Images (blobs)", r.Images.Count, r.Images.Bytes)
			row("Images (unpacked layers)", r.ImageLayers.Count, r.ImageLayers.Bytes)
			row("Untagged images (only theirs)", r.DanglingCount, r.Dangling.Bytes)
			row("Build cache records", r.CacheRecords, 0)
			row("Build cache (blobs)", r.Cache.Count, r.Cache.Bytes)
			row("Build cache (unpacked layers)", r.CacheLayers.Count, r.CacheLayers.Bytes)
			row("Cache mounts", r.CacheMounts.Count, r.CacheMounts.Bytes)
			row("Unreferenced", r.Unreferenced.Count, r.Unreferenced.Bytes)
			tw.Flush()
			fmt.Fprintf(a.stdout, "Reclaimable with prune --all: %s\n", human.Size(r.Reclaimable))
			return nil
		},
	}
}

func (a *app) pruneCmd() *cobra.Command {
	o := gc.Options{Dangling: true}
	var keep string
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove untagged images, build cache (least recently used first) and unreferenced data; tagged images stay",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keep != "" {
				// docker's --keep-storage parser: 512, 10k, 1.5GB, 2GiB (binary units)
				n, err := units.RAMInBytes(keep)
				if err != nil || n < 0 {
					return usagef("--keep-storage=%s: not a size", keep)
				}
				o.KeepStorage = n
				// trimming the build cache to a size leaves images alone,
				// as docker builder prune --keep-storage does
				o.Dangling = false
			}
			for _, f := range filters {
				k, v, _ := strings.Cut(f, "=")
				if k != "until" {
					return usagef("--filter %s: only until=DURATION is supported", f)
				}
				d, err := time.ParseDuration(v)
				if err != nil {
					return usagef("--filter %s: %v", f, err)
				}
				o.Until = d
			}
			b, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			a.releaseBuildLock()
			ix, err := cache.Open(b.Store.Path("cache"))
			if err != nil {
				return err
			}
			res, err := gc.Prune(b.Store, ix, o)
			if err != nil {
				return err
			}
			if len(res.Images) > 0 {
				fmt.Fprintln(a.stdout, "Deleted Images:")
				for _, id := range res.Images {
					fmt.Fprintf(a.stdout, "deleted: %s\n", id)
				}
				fmt.Fprintln(a.stdout)
			}
			fmt.Fprintf(a.stdout, "Removed %d build cache records and %d blobs/layers\nTotal reclaimed space: %s\n", res.Records, res.Freed.Count, human.Size(res.Freed.Bytes))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&o.All, "all", "a", false, "remove all build cache, not only records no image uses")
	cmd.Flags().StringVar(&keep, "keep-storage", "", "keep up to this much build cache (e.g. 10GB)")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "only remove records unused and untagged images created more than this long ago (until=24h)")
	return cmd
}
