// Package testenv is the one test environment of strata's black-box suites
// (test/e2e, test/reliability, test/conformance, test/cli): they build the
// strata binary once per test binary (Setup), run it with a clean
// environment and collect what it did (Suite.Run, Suite.Start), make busybox
// roots and base images the way scripts/make-bases.sh does (busybox.go),
// give each test a store that must be left clean (Suite.NewStore), find what
// strata left behind (leftovers.go), start registries (registry.go) and read
// output images as go-containerregistry images, checked with validate.Image
// (image.go).
package testenv
