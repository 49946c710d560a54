package reliability

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// Set up once by TestMain.
var (
	skipReason  string // non-empty: every test skips with it
	repoRoot    string // the strata module root
	workDir     string // everything the suite writes lives below it
	strataBin   string // the strata binary built for this run
	noConfig    string // a --config path that does not exist
	busyboxRoot string // a busybox rootfs to import into fresh stores
	seed        uint64
	killsPerRun = 8

	rngMu sync.Mutex
	rng   *rand.Rand
)

// The closing counts.
var (
	hostileTried     atomic.Int64 // hostile inputs fed to strata
	killsSurvived    atomic.Int64 // kill -9 after which the store was whole and built again
	signalsHandled   atomic.Int64 // SIGINT/SIGTERM after which strata exited 130/143 and left nothing
	faultsInjected   atomic.Int64 // registry faults the proxy injected
	diskFulls        atomic.Int64 // builds that ran out of space
	corruptions      atomic.Int64 // a damaged store: broken tagged image, bad blob, fsck problem other than leftovers
	tempLeftovers    atomic.Int64 // temp files of killed processes the next command did not remove (bug)
	orphanContainers atomic.Int64 // runc containers of killed processes the next command did not remove (bug)
	fsckRuns         atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	start := time.Now()
	seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("STRATA_RELIABILITY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "reliability: bad STRATA_RELIABILITY_SEED:", err)
			return 2
		}
		seed = v
	}
	rng = rand.New(rand.NewPCG(seed, seed^0x5eed))
	if s := os.Getenv("STRATA_RELIABILITY_KILLS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			fmt.Fprintln(os.Stderr, "reliability: bad STRATA_RELIABILITY_KILLS:", s)
			return 2
		}
		killsPerRun = v
	}
	switch {
	case os.Geteuid() != 0:
		skipReason = "reliability tests need root (overlayfs, runc, tmpfs); run as root"
	default:
		if _, err := exec.LookPath("runc"); err != nil {
			skipReason = "reliability tests need runc in PATH"
		} else if _, err := exec.LookPath("busybox"); err != nil {
			skipReason = "reliability tests need busybox (busybox-static)"
		}
	}
	if skipReason != "" {
		fmt.Fprintln(os.Stderr, "reliability: skipping all tests:", skipReason)
		return m.Run()
	}
	var err error
	if repoRoot, err = filepath.Abs("../.."); err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		return 1
	}
	if workDir, err = os.MkdirTemp("", "strata-reliability-"); err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		return 1
	}
	// Resolved: mountinfo holds resolved paths.
	if workDir, err = filepath.EvalSymlinks(workDir); err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		return 1
	}
	defer func() {
		if m := mountsUnder(workDir); len(m) > 0 {
			fmt.Fprintln(os.Stderr, "reliability: mounts left under", workDir, m)
			unmountAll(workDir)
		}
		os.RemoveAll(workDir)
	}()
	strataBin = filepath.Join(workDir, "strata")
	noConfig = filepath.Join(workDir, "no-such-config.json")
	if bin := os.Getenv("STRATA_RELIABILITY_BIN"); bin != "" {
		strataBin = bin // a strata binary built elsewhere
	} else {
		build := exec.Command("go", "build", "-o", strataBin, "./cmd/strata")
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "reliability: go build ./cmd/strata: %v\n%s", err, out)
			return 1
		}
	}
	if busyboxRoot, err = testenv.BusyboxRoot(filepath.Join(workDir, "busybox-rootfs")); err != nil {
		fmt.Fprintln(os.Stderr, "reliability: busybox rootfs:", err)
		return 1
	}
	code := m.Run()
	summary := fmt.Sprintf("reliability (seed %d, %d kills per scenario, %s): hostile inputs tried %d, kills survived %d, signals handled %d, registry faults injected %d, disk-full builds %d, fsck runs %d, corruptions found %d, temp leftovers of killed processes %d, orphaned runc containers %d\n",
		seed, killsPerRun, time.Since(start).Round(time.Second), hostileTried.Load(), killsSurvived.Load(), signalsHandled.Load(),
		faultsInjected.Load(), diskFulls.Load(), fsckRuns.Load(), corruptions.Load(), tempLeftovers.Load(), orphanContainers.Load())
	fmt.Fprint(os.Stderr, summary)
	if p := os.Getenv("STRATA_RELIABILITY_REPORT"); p != "" {
		os.WriteFile(p, []byte(summary), 0o644)
	}
	return code
}

// randIntn is a shared, seeded source for the random points of the tests.
func randIntn(n int) int {
	rngMu.Lock()
	defer rngMu.Unlock()
	return rng.IntN(n)
}

func randDuration(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(randIntn(int(hi-lo)))
}

func requireEnv(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}
