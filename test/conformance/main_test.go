// Package conformance builds the Dockerfile cases under testdata/cases with the
// strata binary and compares each resulting image with the image BuildKit
// v0.34 produced for the same case (flattened to testdata/cases/*/expected.json).
//
// It needs root, runc and Debian's busybox-static (/bin/busybox); without them
// the builds are skipped (the flattener's self-checks still run).
//
// Environment:
//
//	CONFORMANCE_CASE_TIMEOUT  seconds allowed per build (default 300)
//	CONFORMANCE_JOBS          cases built at once, 1 or 2 (default 1)
//	CONFORMANCE_KEEP=1        keep the work folder (per case: build.log, out.tar, got.json, diff.txt)
//	CONFORMANCE_BUSYBOX       busybox binary for the base image (default /bin/busybox)
package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

// suiteEnv is what TestMain prepared for the cases.
type suiteEnv struct {
	*testenv.Suite
	store string // strata's store shared by every case (STRATA_ROOT)
	// leftovers is set when strata left mounts or containers: the work
	// folder is then kept for a look at them.
	leftovers atomic.Bool
}

func (s *suiteEnv) markLeftovers() { s.leftovers.Store(true) }

var suite suiteEnv

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	s, err := testenv.Setup(testenv.Config{Name: "conformance", Busybox: busyboxPath()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance: set-up failed:", err)
		return 2
	}
	suite.Suite = s
	if s.Skip == "" {
		if err := setUp(); err != nil {
			fmt.Fprintln(os.Stderr, "conformance: set-up failed:", err)
			s.Close(false)
			return 2
		}
	}
	code := m.Run()
	if s.Skip == "" {
		if err := checkNothingLeft(); err != nil {
			suite.markLeftovers()
			fmt.Fprintln(os.Stderr, "conformance:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	if err := s.Close(os.Getenv("CONFORMANCE_KEEP") != "" || suite.leftovers.Load()); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func busyboxPath() string {
	if p := os.Getenv("CONFORMANCE_BUSYBOX"); p != "" {
		return p
	}
	return "/bin/busybox"
}

// setUp makes the shared store and imports the kit's busybox image into it.
// No registry is needed: any attempt to reach a registry other than
// 127.0.0.1 fails fast through a proxy nobody listens on, and no host
// configuration is read.
func setUp() error {
	suite.store = filepath.Join(suite.WorkDir, "store")
	suite.Env = append(suite.Env, "STRATA_ROOT="+suite.store,
		"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9",
		"http_proxy=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9",
		"NO_PROXY=", "no_proxy=",
	)
	rootfs := filepath.Join(suite.WorkDir, "kit-rootfs")
	if err := testenv.KitRoot(rootfs, suite.Busybox); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	// rootless: owners as the user's namespace must show them
	if err := suite.Shift(rootfs); err != nil {
		return err
	}
	if r := suite.Run(suite.store, testenv.RunOpts{}, testenv.ImportArgs(rootfs, "busybox:latest", testenv.ImagePATH)...); r.Code != 0 || r.Err != nil {
		return fmt.Errorf("strata import of the busybox rootfs:\n%s", r)
	}
	return os.RemoveAll(rootfs)
}

// checkNothingLeft fails when strata left mounts under the work folder, or
// runc containers or sessions in its store.
func checkNothingLeft() error {
	problems := testenv.Leftovers(suite.WorkDir) // mounts below the work folder
	for _, l := range testenv.Leftovers(suite.store) {
		if !strings.HasPrefix(l, "mount ") {
			problems = append(problems, l)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("strata left things behind:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}
