package inspect

import (
	"testing"
	"time"
)

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 7: "7B", 999: "999B", 1000: "1kB", 1234: "1.23kB", 4_260_000: "4.26MB", 68_400_000: "68.4MB", 1_500_000_000: "1.5GB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "Less than a second", time.Second: "1 second", 30 * time.Second: "30 seconds", 61 * time.Second: "About a minute",
		5 * time.Minute: "5 minutes", 50 * time.Minute: "50 minutes", time.Hour: "About an hour", 5 * time.Hour: "5 hours",
		3 * 24 * time.Hour: "3 days", 20 * 24 * time.Hour: "2 weeks", 90 * 24 * time.Hour: "3 months", 800 * 24 * time.Hour: "2 years",
	} {
		if got := HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%s) = %q, want %q", d, got, want)
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

func TestEllipsis(t *testing.T) {
	if got := Ellipsis("abcdef", 4); got != "abc…" {
		t.Errorf("got %q", got)
	}
	if got := Ellipsis("abc", 4); got != "abc" {
		t.Errorf("got %q", got)
	}
	if got := Ellipsis("äöüäöü", 3); got != "äö…" {
		t.Errorf("multi-byte: got %q", got)
	}
	if got := OneLine("RUN a\n\tb"); got != "RUN a  b" {
		t.Errorf("OneLine: %q", got)
	}
}
