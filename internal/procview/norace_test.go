//go:build !race

package procview

const raceEnabled = false
