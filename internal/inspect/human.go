package inspect

import (
	"strings"
	"time"
	"unicode/utf8"

	units "github.com/docker/go-units"
)

// HumanSize formats n bytes as docker's SIZE columns do (images, history):
// decimal units, three significant digits ("4.26MB", "512B", "0B"). It is
// strata's one size formatter: images, inspect, history, layers, du and
// prune all print sizes with it.
func HumanSize(n int64) string {
	return units.HumanSizeWithPrecision(float64(n), 3)
}

// HumanDuration formats d as docker's CREATED column does, without the
// " ago" suffix ("About an hour", "3 weeks").
func HumanDuration(d time.Duration) string { return units.HumanDuration(d) }

// Since is strata's one age formatter: HumanDuration(now - t) + " ago", as
// docker images and docker history print it, or "N/A" for a zero
// (unknown) time, as docker images prints an image without a creation time.
func Since(t, now time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return HumanDuration(now.Sub(t)) + " ago"
}

// Ellipsis shortens s to at most n characters, ending in "…" when cut.
func Ellipsis(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return "…"
	}
	return string([]rune(s)[:n-1]) + "…"
}

// OneLine replaces tabs and newlines with spaces (CREATED BY of heredocs).
func OneLine(s string) string {
	return strings.NewReplacer("\t", " ", "\r\n", " ", "\n", " ").Replace(s)
}
