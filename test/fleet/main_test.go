// Package fleet simulates a fleet of builders on one machine: eight strata
// processes, each with a store of its own, build a set of Dockerfiles that
// share stages and export to one registry cache ref at the same moment
// (Debian's docker-registry on loopback), in two rounds. Round 2 runs on
// fresh stores and must hit the steps round 1 built, whichever builder
// built them; no exported record may be missing from the shared cache.
package fleet

import (
	"os"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

var suite *testenv.Suite

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, testenv.Config{Name: "fleet"}, "FLEET_KEEP", &suite))
}
