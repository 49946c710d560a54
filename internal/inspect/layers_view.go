package inspect

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/strata-build/strata/internal/human"
	"github.com/strata-build/strata/internal/image"
)

// LayersReport is what `strata layers` shows of an image: its layers newest
// first (the order of strata history), each with its changes biggest first.
type LayersReport struct {
	Image  string         `json:"image"` // the reference the user gave
	ID     string         `json:"id"`
	Layers []LayerChanges `json:"layers"`
}

// NewLayersReport lays out layers (manifest order, as Layers returns them)
// of img, named ref, newest first.
func NewLayersReport(ref string, img *image.Image, layers []LayerChanges) LayersReport {
	newest := slices.Clone(layers)
	slices.Reverse(newest)
	return LayersReport{Image: ref, ID: img.Manifest.Config.Digest.String(), Layers: newest}
}

// WriteJSON prints the report as JSON, with at most n changes per layer and
// n hidden paths per deletion (n < 0: all), the rest counted in Omitted.
func (r LayersReport) WriteJSON(w io.Writer, n int) error {
	r.Layers = slices.Clone(r.Layers)
	for i := range r.Layers {
		limitChanges(&r.Layers[i], n)
	}
	return WriteJSON(w, r, "  ")
}

// limitChanges keeps the n biggest changes of l (n < 0: all) and at most n
// hidden paths under each deletion.
func limitChanges(l *LayerChanges, n int) {
	if n < 0 {
		return
	}
	if len(l.Changes) > n {
		l.Omitted = len(l.Changes) - n
		l.Changes = l.Changes[:n]
	}
	l.Changes = slices.Clone(l.Changes)
	for i := range l.Changes {
		if len(l.Changes[i].Hides) > n {
			l.Changes[i].Hides = l.Changes[i].Hides[:n]
		}
	}
}

// WriteText prints the report for people: a summary line, then each layer
// with at most n paths (n < 0: all) and at most n hidden paths under each
// deletion.
func (r LayersReport) WriteText(w io.Writer, n int) error {
	var content, compressed int64
	for _, l := range r.Layers {
		content += l.Content
		compressed += l.Size
	}
	id := strings.TrimPrefix(r.ID, "sha256:")
	fmt.Fprintf(w, "%s  ID %s  %d layers  %s (%s compressed)\n", r.Image, id[:min(12, len(id))],
		len(r.Layers), human.Size(content), human.Size(compressed))
	for _, l := range r.Layers {
		fmt.Fprintln(w)
		writeLayer(w, l, len(r.Layers), n)
	}
	return nil
}

func writeLayer(w io.Writer, l LayerChanges, total, n int) {
	digest := l.Digest
	if i := strings.IndexByte(digest, ':'); i >= 0 && len(digest) > i+13 {
		digest = digest[:i+13]
	}
	fmt.Fprintf(w, "Layer %d/%d  %s  %s (%s compressed)\n", l.Index+1, total, digest, human.Size(l.Content), human.Size(l.Size))
	by := human.Escape(OneLine(l.CreatedBy))
	if by == "" {
		by = "<missing>"
	}
	fmt.Fprintf(w, "  created by: %s\n", Ellipsis(by, 100))
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
	writeRows(w, changeRows(changes, n))
	if restCount > 0 {
		fmt.Fprintf(w, "  ... %d more (%s); --all shows every path\n", restCount, human.Size(restSize))
	}
}

// changeRows are the KIND SIZE PATH rows of changes, each deletion followed
// by at most n of the paths it hides (n < 0: all).
func changeRows(changes []Change, n int) [][3]string {
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
	return rows
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
func changeText(c Change) string {
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
	case c.Kind == Modified && c.LowerSize > 0:
		s += fmt.Sprintf(" (replaces %s)", human.Size(c.LowerSize))
	case c.Kind == Deleted && c.Opaque:
		s += fmt.Sprintf(" (opaque: hides %s below)", paths(c.HiddenPaths))
	case c.Kind == Deleted && c.Type == "dir":
		s += fmt.Sprintf(" (hides %s)", paths(c.HiddenPaths))
	case c.Kind == Deleted && c.Type == "":
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
