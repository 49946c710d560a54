package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/executor/runc"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

func (a *app) fsckCmd() *cobra.Command {
	var repair, deep, quiet bool
	var sample int
	cmd := &cobra.Command{
		Use:   "fsck [--repair]",
		Short: "Check the store: blob digests, images, unpacked layers, cache records and leftovers",
		Long: `Check the store: every blob against its digest, every tagged image's manifest,
config and layers, the unpacked layers (for a sample of them, the diffID of their
blob, the hash states its members sidecar records for the next commit, and that
the directory holds every entry), the build cache records, and what
strata processes that died left behind (sessions, mounts, runc containers, temp
files). Exit code 0 when the store is sound (or --repair fixed everything), 1
when problems remain.

--repair deletes corrupt blobs and untags the images that need them, deletes
cache records whose layer blob is gone, removes incomplete unpacked layers (they
are unpacked again from their blob) and wrong members sidecars, and releases and
removes leftovers. It needs
the store to itself: it fails while another strata command runs, and commands
started meanwhile wait for it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Not a.open: that would reclaim dead sessions before they are
			// reported, and give fsck a session of its own.
			s, err := store.Open(a.root)
			if err != nil {
				return err
			}
			defer s.Close()
			if deep {
				sample = -1
			}
			runner := &runc.Runner{StateDir: s.Path("runc")}
			opts := store.FsckOptions{
				Repair:     repair,
				Decompress: layer.Decompress,
				DiffDir: func(ctx context.Context, dir string, epoch *time.Time) (digest.Digest, error) {
					return layer.DiffID(ctx, dir, layer.DiffOptions{Epoch: epoch})
				},
				MemberStates:    layer.MemberStates,
				LayerSample:     sample,
				Containers:      runner.Containers,
				DeleteContainer: runner.DeleteContainer,
				Progress:        func(p store.Problem) { fmt.Fprintln(a.stdout, p.String()) },
			}
			rep, err := s.Fsck(cmd.Context(), opts)
			if err != nil {
				return err
			}
			repaired := len(rep.Problems) - rep.Remaining()
			if !quiet || len(rep.Problems) > 0 {
				fmt.Fprintf(a.stdout, "checked %d blobs, %d images, %d unpacked layers (%d re-read), %d cache records: %d problems",
					rep.Blobs, rep.Images, rep.Layers, rep.LayersVerified, rep.CacheRecords, len(rep.Problems))
				if repair {
					fmt.Fprintf(a.stdout, ", %d repaired", repaired)
				}
				fmt.Fprintln(a.stdout)
			}
			if rep.InUse {
				fmt.Fprintln(a.stderr, "note: another strata process is using the store; its temp files were not checked")
			}
			if n := rep.Remaining(); n > 0 {
				hint := "; run strata fsck --repair"
				if repair {
					hint = ""
				}
				return fmt.Errorf("store %s: %d problems remain%s", s.Root(), n, hint)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "fix what can be fixed (delete corrupt blobs, untag broken images, remove leftovers)")
	cmd.Flags().BoolVar(&deep, "deep", false, "re-read every layer blob (diffID) and compare it with its unpacked directory")
	cmd.Flags().IntVar(&sample, "sample", 4, "how many layers to re-read and compare (at random)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only problems")
	return cmd
}
