//go:build race

package procview

// raceEnabled: the test binary has the race detector, whose runtime reads
// the child's /proc/self/maps at start, which a fake /proc does not have.
const raceEnabled = true
