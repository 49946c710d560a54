package inspect

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// HumanSize formats n bytes as docker does: decimal units, three significant
// digits ("4.26MB", "512B", "0B").
func HumanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}

// HumanDuration formats d as docker's "CREATED" column does, without the
// " ago" suffix ("About an hour", "3 weeks").
func HumanDuration(d time.Duration) string {
	seconds := int(d.Seconds())
	switch {
	case seconds < 1:
		return "Less than a second"
	case seconds == 1:
		return "1 second"
	case seconds < 60:
		return fmt.Sprintf("%d seconds", seconds)
	}
	minutes := int(d.Minutes())
	switch {
	case minutes == 1:
		return "About a minute"
	case minutes < 60:
		return fmt.Sprintf("%d minutes", minutes)
	}
	hours := int(d.Hours() + 0.5)
	switch {
	case hours == 1:
		return "About an hour"
	case hours < 48:
		return fmt.Sprintf("%d hours", hours)
	case hours < 24*7*2:
		return fmt.Sprintf("%d days", hours/24)
	case hours < 24*30*2:
		return fmt.Sprintf("%d weeks", hours/24/7)
	case hours < 24*365*2:
		return fmt.Sprintf("%d months", hours/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

// Since is HumanDuration(now - t) + " ago", or "N/A" for a zero time.
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
