package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/human"
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
			// newest first
			for i, j := 0, len(layers)-1; i < j; i, j = i+1, j-1 {
				layers[i], layers[j] = layers[j], layers[i]
			}
			n := limit
			if all || (asJSON && !cmd.Flags().Changed("limit")) {
				n = -1
			}
			var out bytes.Buffer
			if asJSON {
				for i := range layers {
					limitChanges(&layers[i], n)
				}
				doc := struct {
					Image  string                 `json:"image"`
					ID     string                 `json:"id"`
					Layers []inspect.LayerChanges `json:"layers"`
				}{args[0], img.Manifest.Config.Digest.String(), layers}
				enc := json.NewEncoder(&out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				if err := enc.Encode(doc); err != nil {
					return err
				}
			} else {
				var content, compressed int64
				for _, l := range layers {
					content += l.Content
					compressed += l.Size
				}
				fmt.Fprintf(&out, "%s  ID %s  %d layers  %s (%s compressed)\n", args[0], img.Manifest.Config.Digest.Hex[:12],
					len(layers), human.Size(content), human.Size(compressed))
				for _, l := range layers {
					out.WriteByte('\n')
					writeLayer(&out, l, len(layers), n)
				}
			}
			_, err = a.stdout.Write(out.Bytes())
			return err
		},
	}
	fl := cmd.Flags()
	fl.IntVarP(&limit, "limit", "n", 20, "show at most this many paths per layer (and per deletion), biggest first")
	fl.BoolVarP(&all, "all", "a", false, "show every path (no --limit)")
	fl.BoolVar(&asJSON, "json", false, "print JSON (every path, unless --limit is given)")
	return cmd
}

// limitChanges keeps the n biggest changes of l (n < 0: all) and at most n
// hidden paths under each deletion.
func limitChanges(l *inspect.LayerChanges, n int) {
	if n < 0 {
		return
	}
	if len(l.Changes) > n {
		l.Omitted = len(l.Changes) - n
		l.Changes = l.Changes[:n]
	}
	for i := range l.Changes {
		if len(l.Changes[i].Hides) > n {
			l.Changes[i].Hides = l.Changes[i].Hides[:n]
		}
	}
}

func writeLayer(w io.Writer, l inspect.LayerChanges, total, n int) {
	digest := l.Digest
	if i := strings.IndexByte(digest, ':'); i >= 0 && len(digest) > i+13 {
		digest = digest[:i+13]
	}
	fmt.Fprintf(w, "Layer %d/%d  %s  %s (%s compressed)\n", l.Index+1, total, digest, human.Size(l.Content), human.Size(l.Size))
	by := human.Escape(inspect.OneLine(l.CreatedBy))
	if by == "" {
		by = "<missing>"
	}
	fmt.Fprintf(w, "  created by: %s\n", inspect.Ellipsis(by, 100))
	summary := fmt.Sprintf("  %d added, %d modified, %d deleted", l.Added, l.Modified, l.Deleted)
	if l.HiddenBytes > 0 {
		summary += fmt.Sprintf("; hides %s of the layers below", human.Size(l.HiddenBytes))
	}
	fmt.Fprintln(w, summary)
	if len(l.Changes) == 0 {
		fmt.Fprintln(w, "  (no changes)")
		return
	}
	changes := l.Changes
	var restCount int
	var restSize int64
	if n >= 0 && len(changes) > n {
		for _, c := range changes[n:] {
			restSize += c.Size
		}
		restCount = len(changes) - n
		changes = changes[:n]
	}
	rows := make([][3]string, 0, len(changes))
	for _, c := range changes {
		rows = append(rows, [3]string{string(c.Kind), human.Size(c.Size), changeText(c)})
		hides := c.Hides
		more := 0
		if n >= 0 && len(hides) > n {
			more = len(hides) - n
			hides = hides[:n]
		}
		for _, h := range hides {
			rows = append(rows, [3]string{"", human.Size(h.Size), "    " + human.Escape(h.Path)})
		}
		if more > 0 {
			rows = append(rows, [3]string{"", "", fmt.Sprintf("    ... %d more", more)})
		}
	}
	writeRows(w, rows)
	if restCount > 0 {
		fmt.Fprintf(w, "  ... %d more (%s); --all shows every path\n", restCount, human.Size(restSize))
	}
}

// writeRows prints KIND SIZE PATH rows with the sizes right-aligned.
func writeRows(w io.Writer, rows [][3]string) {
	width := 0
	for _, r := range rows {
		width = max(width, len(r[1]))
	}
	for _, r := range rows {
		kind := r[0]
		if kind == "" {
			kind = " "
		}
		fmt.Fprintf(w, "  %s %*s  %s\n", kind, width, r[1], r[2])
	}
}

// changeText is a change's path with what it is.
func changeText(c inspect.Change) string {
	s := human.Escape(c.Path)
	switch c.Type {
	case "symlink":
		s += " -> " + human.Escape(c.Link)
	case "hardlink":
		s += " (hard link to " + human.Escape(c.Link) + ")"
	case "char", "block":
		s += " (" + c.Type + " device)"
	case "fifo":
		s += " (fifo)"
	}
	switch {
	case c.Kind == inspect.Modified && c.LowerSize > 0:
		s += fmt.Sprintf(" (replaces %s)", human.Size(c.LowerSize))
	case c.Kind == inspect.Deleted && c.Opaque:
		s += fmt.Sprintf(" (opaque: hides %s below)", paths(c.HiddenPaths))
	case c.Kind == inspect.Deleted && c.Type == "dir":
		s += fmt.Sprintf(" (hides %s)", paths(c.HiddenPaths))
	case c.Kind == inspect.Deleted && c.Type == "":
		s += " (not in the layers below)"
	}
	return s
}

func paths(n int) string {
	if n == 1 {
		return "1 path"
	}
	return fmt.Sprintf("%d paths", n)
}
