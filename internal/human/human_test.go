package human

import (
	"testing"
	"time"
)

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 7: "7B", 999: "999B", 1000: "1kB", 1234: "1.23kB", 4_260_000: "4.26MB", 68_400_000: "68.4MB", 1_500_000_000: "1.5GB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "Less than a second", time.Second: "1 second", 30 * time.Second: "30 seconds", 61 * time.Second: "About a minute",
		5 * time.Minute: "5 minutes", 50 * time.Minute: "50 minutes", time.Hour: "About an hour", 5 * time.Hour: "5 hours",
		3 * 24 * time.Hour: "3 days", 20 * 24 * time.Hour: "2 weeks", 90 * 24 * time.Hour: "3 months", 800 * 24 * time.Hour: "2 years",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
	now := time.Now()
	if got := Since(now.Add(-3*time.Hour), now); got != "3 hours ago" {
		t.Errorf("Since = %q", got)
	}
	if got := Since(time.Time{}, now); got != "N/A" {
		t.Errorf("Since(zero) = %q", got)
	}
}

func TestRate(t *testing.T) {
	if got := Rate(25_000_000, 2*time.Second); got != "12.5MB/s" {
		t.Errorf("Rate = %q", got)
	}
	if got := Rate(0, 0); got != "0B/s" {
		t.Errorf("Rate(0, 0) = %q", got)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain/path é":               "plain/path é",
		"\x1b]52;c;cHduZWQ=\x07":     `\x1b]52;c;cHduZWQ=\x07`,
		"a\x1b[2Jb":                  `a\x1b[2Jb`,
		"two\nlines\tand\r":          `two\nlines\tand\r`,
		"c1 \u009b2J del \x7f":       `c1 \u009b2J del \x7f`,
		"bad \xff utf8":              `bad \xff utf8`,
		"":                           "",
		"\ufffd real replacement ok": "\ufffd real replacement ok",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
