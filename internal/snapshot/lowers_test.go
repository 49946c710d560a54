package snapshot

import (
	"reflect"
	"testing"
)

func TestLowers(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{nil, []string{}},
		{[]string{"a"}, []string{"a"}},
		{[]string{"a", "b", "c"}, []string{"c", "b", "a"}},
		// identical layers share a dir: keep the top-most place only
		{[]string{"a", "x", "b", "x"}, []string{"x", "b", "a"}},
		{[]string{"x", "x", "x"}, []string{"x"}},
	}
	for _, tt := range tests {
		if got := Lowers(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lowers(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
