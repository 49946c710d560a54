// Package unprivileged runs strata inside an unprivileged container, as in
// a Kubernetes pod at Pod Security Baseline: root without CAP_SYS_ADMIN,
// Docker's default capabilities and seccomp profile, no user namespace, no
// mount, the host's network, the strata binary bound in and the store on a
// volume (testenv.Container: the container is made by `strata run`). strata
// finds it may not mount and builds in chroot isolation. It checks the seed
// example gives the image a rootful build gives, that strata says which
// mode it is in, and that what the mode cannot do fails clearly. The
// project's conformance cases run there too (scripts/test.sh sets
// STRATA_TEST_IN_CONTAINER=1 for test/conformance).
package unprivileged

import (
	"os"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

var suite *testenv.Suite

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, testenv.Config{Name: "unprivileged", InContainer: true, Busybox: "/bin/busybox"}, "UNPRIVILEGED_KEEP", &suite))
}
