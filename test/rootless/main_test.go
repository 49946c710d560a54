// Package rootless runs strata as an ordinary user that the suite creates
// (useradd, with a /etc/subuid range) and checks that rootless builds give
// the images rootful builds give, that the store holds only the user's own
// and subordinate uids, that a killed rootless build leaves nothing behind,
// and that a user without a subordinate range gets a one-line error.
//
// It needs root (to create the user), runc, newuidmap (Debian's uidmap)
// and busybox-static; the project's conformance cases run rootless as well
// (scripts/test.sh sets STRATA_TEST_ROOTLESS=1 for test/conformance).
package rootless

import (
	"os"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

var suite *testenv.Suite

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, testenv.Config{Name: "rootless", Rootless: true, Busybox: "/bin/busybox"}, "ROOTLESS_KEEP", &suite))
}
