// Package human formats sizes, rates and ages for people, in Docker's
// wording (github.com/docker/go-units, as the docker CLI uses it). It is
// strata's one formatter for them: the CLI's tables, the build progress and
// the HTML report all print through it, so one image shows one size.
package human

import (
	"time"

	units "github.com/docker/go-units"
)

// Size formats n bytes as docker's SIZE columns do (images, history):
// decimal units, three significant digits ("4.26MB", "512B", "0B").
func Size(n int64) string {
	return units.HumanSizeWithPrecision(float64(n), 3)
}

// Rate formats n bytes moved in d as Size per second ("12.3MB/s").
func Rate(n int64, d time.Duration) string {
	secs := max(d.Seconds(), 0.001)
	return units.HumanSizeWithPrecision(float64(n)/secs, 3) + "/s"
}

// Duration formats d as docker's CREATED column does, without the " ago"
// suffix ("About an hour", "3 weeks").
func Duration(d time.Duration) string { return units.HumanDuration(d) }

// Since is Duration(now - t) + " ago", as docker images and docker history
// print an age, or "N/A" for a zero (unknown) time, as docker images prints
// an image without a creation time.
func Since(t, now time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return Duration(now.Sub(t)) + " ago"
}
