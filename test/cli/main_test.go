// Package cli tests strata's inspection and documentation commands through
// the binary: images built from real Dockerfiles (root, runc and overlayfs)
// are examined with strata inspect, history and layers and checked against
// what the store's blobs hold (read here independently) and what skopeo
// says; graph output is rendered with Graphviz, completion scripts run in
// bash, man pages go through groff.
package cli

import (
	"os"
	"strings"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

// suite is set up once by TestMain.
var suite *testenv.Suite

type (
	result  = testenv.Result
	runOpts = testenv.RunOpts
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, testenv.Config{Name: "cli"}, "", &suite)) }

// strataRun runs the binary with --root store (store "" leaves it out) and
// stdin as its input; only a run that could not happen fails t.
func strataRun(t *testing.T, store string, stdin string, args ...string) result {
	t.Helper()
	r := suite.Run(store, runOpts{Stdin: strings.NewReader(stdin)}, args...)
	if r.Err != nil {
		t.Fatalf("%s", r)
	}
	return r
}

func strata(t *testing.T, store string, args ...string) result {
	t.Helper()
	return suite.MustRun(t, store, runOpts{}, args...)
}

// importBase are the arguments that import the busybox root as base:latest.
func importBase() []string {
	return testenv.ImportArgs(suite.BusyboxRoot, "base:latest", "PATH=/bin")
}

// newStore makes a store with base:latest imported; it is checked (nothing
// left mounted, no containers or sessions) and removed when the test ends.
func newStore(t *testing.T) string {
	t.Helper()
	dir := suite.NewStore(t)
	strata(t, dir, importBase()...)
	return dir
}
