package human

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape makes text from an image or a Dockerfile (file names, history,
// step names, errors that quote them) safe to print on a terminal: control
// characters (C0 including tab and newline, DEL, C1) and bytes that are not
// UTF-8 are written as Go escapes ("\x1b", "\n", "\u009b", "\xff"), so no
// escape sequence (ESC]52 clipboard writes, ESC[2J) reaches the terminal and
// one entry stays one line. Printable text, including non-ASCII, is kept.
// Every human-readable output escapes through it; JSON output needs nothing
// (the encoder escapes control characters).
func Escape(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || unicode.IsControl(r) })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}
