package cli

import (
	"strings"
	"testing"
)

// Usage errors are told apart by type, not by text: an error that merely
// quotes "invalid argument" or "unknown flag" (an image name here; a hostile
// layer's file name or xattr in a build) is a failure (exit 1), while
// cobra's own errors stay usage errors (exit 2, "See 'strata --help'").
func TestUsageErrorsByType(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"invalid argument", "unknown flag", "requires exactly", "accepts "} {
		r := strataIn(t, root, "inspect", name)
		if r.code != ExitFail || strings.Contains(r.stderr, "--help") {
			t.Errorf("inspect %q: exit %d, want %d without a usage hint:\n%s", name, r.code, ExitFail, r.stderr)
		}
	}
	for _, args := range [][]string{{"nosuchcommand"}, {"inspect", "--nosuchflag", "x"}, {"tag", "a"}, {"images", "x"}, {"history", "--limit=x", "a"}, {"layers", "--limit", "x", "a"}} {
		r := strataIn(t, root, args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, "See 'strata --help'") {
			t.Errorf("%q: exit %d, want %d with a usage hint:\n%s", args, r.code, ExitUsage, r.stderr)
		}
	}
}
