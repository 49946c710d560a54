package builder

import "testing"

// UndefinedVar's "did you mean" is BuildKit's: util/suggest, case-sensitive,
// an edit distance below 3 (short names included), first best wins.
func TestSuggestName(t *testing.T) {
	keys := []string{"PATH", "HOME", "GOPATH", "B"}
	for v, want := range map[string]string{
		"PAHT":      "PATH",
		"path":      "", // BuildKit on Linux matches case-sensitively
		"A":         "B",
		"GOPTH":     "GOPATH",
		"UNRELATED": "",
	} {
		if got := suggestName(v, keys); got != want {
			t.Errorf("suggestName(%q) = %q, want %q", v, got, want)
		}
	}
}
