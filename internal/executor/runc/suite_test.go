package runc

import (
	"testing"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/testsuite"
)

// TestSuite runs the executor suite against runc.
func TestSuite(t *testing.T) {
	requireRunc(t)
	testsuite.Run(t, testsuite.Config{
		New:      func(t *testing.T) executor.Executor { return newRunner(t) },
		IDPrefix: testPrefix + "suite-",
	})
}
