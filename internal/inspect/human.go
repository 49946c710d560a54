package inspect

import (
	"strings"
	"unicode/utf8"
)

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
