package e2e

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoKeepsToItsStore runs scripts/demo.sh as the README says, with
// STRATA_ROOT naming the user's store: the demo builds and runs seed in a
// store of its own (STRATA_DEMO_ROOT here) and leaves the user's alone,
// where its golang:1.26 (busybox plus the host's Go, no make, no git) would
// otherwise win over the real image in the user's next build.
func TestDemoKeepsToItsStore(t *testing.T) {
	t.Parallel()
	demo := suite.NewStore(t)
	user := filepath.Join(suite.TempDir(t), "user-store")
	ctx, cancel := context.WithTimeout(context.Background(), seedTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(suite.RepoRoot, "scripts", "demo.sh"))
	cmd.Dir = suite.RepoRoot
	cmd.Env = suite.Environ("STRATA_ROOT="+user, "STRATA_DEMO_ROOT="+demo)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("scripts/demo.sh took %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("scripts/demo.sh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "server 1.0.0") {
		t.Errorf("the demo did not run the seed server:\n%s", out)
	}
	if _, err := os.Stat(user); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the demo wrote to the user's store %s (stat: %v):\n%s", user, err, out)
	}
	r := strata(t, demo, "images")
	for _, name := range []string{"golang", "seed", "busybox"} {
		if _, ok := lineWith(r.Stdout, name); !ok {
			t.Errorf("no %s in the demo's store:\n%s", name, r)
		}
	}
}
