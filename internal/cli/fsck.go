package cli

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

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
blob and that the directory holds every entry), the build cache records, and what
strata processes that died left behind (sessions, mounts, runc containers, temp
files). Exit code 0 when the store is sound (or --repair fixed everything), 1
when problems remain.

--repair deletes corrupt blobs and untags the images that need them, deletes
cache records whose layer blob is gone, removes incomplete unpacked layers (they
are unpacked again from their blob) and releases and removes leftovers. It needs
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
			if deep {
				sample = -1
			}
			runtime := "runc"
			state := s.Path("runc")
			opts := store.FsckOptions{
				Repair:     repair,
				Decompress: layer.Decompress,
				DiffDir: func(ctx context.Context, dir string, epoch *time.Time) (digest.Digest, error) {
					return layer.DiffID(ctx, dir, layer.DiffOptions{Epoch: epoch})
				},
				LayerSample: sample,
				Containers: func(ctx context.Context) ([]string, error) {
					if _, err := exec.LookPath(runtime); err != nil {
						return nil, nil // no runc: no containers
					}
					// runc list fails when a container goes while it lists
					// (another build's RUN ending): try again.
					var err error
					for attempt := 0; attempt < 10; attempt++ {
						var out []byte
						out, err = exec.CommandContext(ctx, runtime, "--root", state, "list", "-q").Output()
						if err == nil {
							return strings.Fields(string(out)), nil
						}
						var ee *exec.ExitError
						if errors.As(err, &ee) {
							err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
						}
						time.Sleep(50 * time.Millisecond)
					}
					return nil, fmt.Errorf("runc list: %w", err)
				},
				DeleteContainer: func(ctx context.Context, id string) error {
					out, err := exec.CommandContext(ctx, runtime, "--root", state, "delete", "--force", id).CombinedOutput()
					if err != nil {
						return fmt.Errorf("runc delete: %w: %s", err, strings.TrimSpace(string(out)))
					}
					return nil
				},
				Progress: func(p store.Problem) { fmt.Fprintln(a.stdout, p.String()) },
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
