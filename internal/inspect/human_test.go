package inspect

import (
	"testing"
)

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
