// Package multiplatform builds images for several platforms at once, with
// a second architecture made offline: Debian's busybox-static for arm64
// (scripts/install-deps.sh fetches it) beside the host's, imported and
// joined into one busybox index on Debian's docker-registry. It checks the
// cross-compiling seed (its arm64 server is an aarch64 program that runs
// under qemu-aarch64, and the compile ran on the build platform), RUN
// steps that run on the target under QEMU (registered for the test when
// it is not), the index in type=oci and on the registry as skopeo and
// umoci read it, and strata run --platform.
package multiplatform

import (
	"os"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

var suite *testenv.Suite

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, testenv.Config{Name: "multiplatform", Busybox: "/bin/busybox"}, "MULTIPLATFORM_KEEP", &suite))
}
