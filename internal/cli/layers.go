package cli

import (
	"bytes"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/inspect"
)

func (a *app) layersCmd() *cobra.Command {
	var limit int
	var all, asJSON bool
	cmd := &cobra.Command{
		Use:   "layers [OPTIONS] IMAGE",
		Short: "Show the files each layer of an image adds, changes and deletes",
		Long: `Show what every layer of an image does to the filesystem, newest layer first
(the order of 'strata history'): its digest, its size (content and compressed),
the step that made it, and the paths it changes, biggest first:

    A  added: the path did not exist in the layers below
    M  modified: the path existed below and this layer replaces it
       (the size it replaces is shown: those bytes stay in the image)
    D  deleted: a whiteout or an opaque directory hides the path below;
       the size is what it hides, and the hidden paths are listed under it

Directories that existed below and come again in a layer (as the parents of
new files, or with new metadata) are not listed. "hides" in a layer's summary
is what it deletes or replaces in the layers below: bytes the image carries
but no container sees.

The layers are read from the store's blobs; nothing is unpacked.`,
		Example: `  strata layers myapp:1.0
  strata layers --limit 5 golang:1.26
  strata layers --all busybox
  strata layers --json myapp | jq '.layers[0].changes[:3]'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usagef("--limit %d: must be 0 or more", limit)
			}
			img, err := a.loadRef(cmd, args[0])
			if err != nil {
				return err
			}
			layers, err := inspect.Layers(cmd.Context(), a.store, img)
			if err != nil {
				return err
			}
			n := limit
			if all || (asJSON && !cmd.Flags().Changed("limit")) {
				n = -1
			}
			r := inspect.NewLayersReport(args[0], img, layers)
			var out bytes.Buffer
			if asJSON {
				err = r.WriteJSON(&out, n)
			} else {
				err = r.WriteText(&out, n)
			}
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(out.Bytes())
			return err
		},
	}
	fl := cmd.Flags()
	fl.IntVarP(&limit, "limit", "n", 20, "show at most this many paths per layer (and per deletion), biggest first")
	fl.BoolVarP(&all, "all", "a", false, "show every path (no --limit)")
	fl.BoolVar(&asJSON, "json", false, "print JSON (every path, unless --limit is given)")
	return addPlatformFlag(cmd)
}
