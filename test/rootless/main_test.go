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
	"fmt"
	"os"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

var suite *testenv.Suite

func TestMain(m *testing.M) {
	s, err := testenv.Setup(testenv.Config{Name: "rootless", Rootless: true, Busybox: "/bin/busybox"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rootless: set-up failed:", err)
		os.Exit(2)
	}
	suite = s
	code := m.Run()
	if err := s.Close(os.Getenv("ROOTLESS_KEEP") != ""); err != nil {
		fmt.Fprintln(os.Stderr, "rootless:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
