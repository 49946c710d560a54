package inspect

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/strata-build/strata/internal/human"
	"github.com/strata-build/strata/internal/image"
)

// HistoryRow is one line of `strata history`; its fields are the --format
// placeholders (docker's).
type HistoryRow struct {
	ID           string
	CreatedSince string
	CreatedAt    string
	CreatedBy    string
	Size         string
	Comment      string
}

// historyHeader is the header line of the history table.
var historyHeader = HistoryRow{ID: "IMAGE", CreatedSince: "CREATED", CreatedAt: "CREATED AT", CreatedBy: "CREATED BY", Size: "SIZE", Comment: "COMMENT"}

// defaultHistoryTable is docker history's table.
const defaultHistoryTable = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"

// HistoryRows lays out img's history newest first, as docker history does:
// the image ID on the newest step, <missing> on the others. sizes are the
// layers' content sizes (nil: not computed, as for -q). trunc shortens the
// ID and CREATED BY (45 characters); humanReadable prints ages and sizes
// for people, else times and byte counts.
func HistoryRows(img *image.Image, sizes []int64, now time.Time, trunc, humanReadable bool) []HistoryRow {
	steps := Steps(&img.Config, len(img.Layers))
	id := img.Manifest.Config.Digest.String()
	if trunc {
		id = img.Manifest.Config.Digest.Hex[:12]
	}
	rows := make([]HistoryRow, 0, len(steps))
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		r := HistoryRow{ID: "<missing>", CreatedBy: human.Escape(OneLine(s.CreatedBy)), Comment: human.Escape(s.Comment)}
		if len(rows) == 0 {
			r.ID = id
		}
		if trunc {
			r.CreatedBy = Ellipsis(r.CreatedBy, 45)
		}
		var size int64
		if s.Layer >= 0 && s.Layer < len(sizes) {
			size = sizes[s.Layer]
		}
		if !s.Created.IsZero() {
			r.CreatedAt = s.Created.Format(time.RFC3339)
		}
		if humanReadable {
			r.CreatedSince = human.Since(s.Created, now)
			r.Size = human.Size(size)
		} else {
			r.CreatedSince = r.CreatedAt
			r.Size = strconv.FormatInt(size, 10)
		}
		rows = append(rows, r)
	}
	return rows
}

// WriteHistory prints rows: their IDs only (quiet), one line per row with
// tmpl, or, for a table template or none (docker's columns), aligned
// columns under a header.
func WriteHistory(w io.Writer, rows []HistoryRow, tmpl *Template, quiet bool) error {
	switch {
	case quiet:
		for _, r := range rows {
			if _, err := fmt.Fprintln(w, r.ID); err != nil {
				return err
			}
		}
		return nil
	case tmpl != nil && !tmpl.Table:
		return executeLines(w, tmpl, rows)
	}
	if tmpl == nil {
		tmpl, _ = ParseTemplate(defaultHistoryTable)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	if err := executeLines(tw, tmpl, append([]HistoryRow{historyHeader}, rows...)); err != nil {
		return err
	}
	return tw.Flush()
}

// executeLines runs tmpl on each value, one line each.
func executeLines[T any](w io.Writer, tmpl *Template, vals []T) error {
	for _, v := range vals {
		if err := tmpl.Execute(w, v); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "\n"); err != nil {
			return err
		}
	}
	return nil
}
