package reliability

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// Set up once by TestMain.
var (
	suite       *testenv.Suite
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
	var err error
	suite, err = testenv.Setup(testenv.Config{Name: "reliability", Timeout: 2 * time.Minute, BinEnv: "STRATA_RELIABILITY_BIN"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
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
	if err := suite.Close(false); err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		code = 1
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
