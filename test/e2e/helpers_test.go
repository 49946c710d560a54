package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// Set up once by TestMain.
var (
	suite     *testenv.Suite
	seedStore string // shared store with busybox:latest and golang:1.26 (scripts/make-bases.sh)
	seedSetup error  // why seedStore could not be made
)

const seedTimeout = 6 * time.Minute // a golang build under load

type (
	result  = testenv.Result
	runOpts = testenv.RunOpts
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	if suite, err = testenv.Setup(testenv.Config{Name: "e2e", Timeout: 3 * time.Minute}); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if suite.Skip == "" {
		// The shared store for the seed tests: importing golang takes a while, do it once.
		seedStore = filepath.Join(suite.WorkDir, "seed-store")
		mb := exec.Command(filepath.Join(suite.RepoRoot, "scripts", "make-bases.sh"), suite.Bin)
		mb.Dir = suite.RepoRoot
		mb.Env = suite.Environ("STRATA_ROOT=" + seedStore)
		if out, err := mb.CombinedOutput(); err != nil {
			seedSetup = fmt.Errorf("scripts/make-bases.sh: %v\n%s", err, out)
		}
	}
	code := m.Run()
	if err := testenv.ReleaseStore(seedStore); seedStore != "" && err != nil {
		fmt.Fprintln(os.Stderr, "e2e: shared seed store was not clean:", err)
		code = 1
	}
	if err := suite.Close(false); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		code = 1
	}
	return code
}

// sharedSeedStore returns the shared store holding busybox:latest and golang:1.26.
func sharedSeedStore(t *testing.T) string {
	t.Helper()
	suite.RequireBuild(t)
	if seedSetup != nil {
		t.Fatalf("the shared store with the golang base could not be made: %v", seedSetup)
	}
	return seedStore
}

// strata runs strata and fails the test unless it exits 0.
func strata(t *testing.T, store string, args ...string) result {
	t.Helper()
	return suite.MustRun(t, store, runOpts{}, args...)
}

// strataRun runs strata in store and returns what happened, whatever it was.
func strataRun(t *testing.T, store string, o runOpts, args ...string) result {
	t.Helper()
	return suite.Run(store, o, args...)
}

// newSameBusyboxStore is NewBusyboxStore with the import's time fixed, so
// that every such store holds the same busybox image, as on machines that
// pull it from one registry.
func newSameBusyboxStore(t *testing.T) string {
	t.Helper()
	s := suite.NewStore(t)
	suite.ImportBusybox(t, s, "SOURCE_DATE_EPOCH=1577836800")
	return s
}

// ---- archives ----

func entryNames(es []tar.Header) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

// cleanName is a tar entry name without "./" and trailing "/".
func cleanName(n string) string {
	return strings.TrimSuffix(strings.TrimPrefix(n, "./"), "/")
}

func hasEntry(es []tar.Header, name string) bool {
	for _, e := range es {
		if cleanName(e.Name) == name {
			return true
		}
	}
	return false
}

// ---- processes and network ----

// runTool runs a third-party tool and fails the test with its output on error.
func runTool(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = suite.WorkDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n--- stdout ---\n%s\n--- stderr ---\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// lineWith returns the first line of s that contains all of subs.
func lineWith(s string, subs ...string) (string, bool) {
	for _, l := range strings.Split(s, "\n") {
		ok := true
		for _, sub := range subs {
			if !strings.Contains(l, sub) {
				ok = false
				break
			}
		}
		if ok {
			return l, true
		}
	}
	return "", false
}

// startRegistry starts Debian's docker-registry (with its access log) on a
// free 127.0.0.1 port; it is stopped by PID when the test ends.
func startRegistry(t *testing.T) *testenv.Registry {
	t.Helper()
	return testenv.StartDockerRegistry(t, testenv.RequireTool(t, "docker-registry"), suite.TempDir(t), true)
}
