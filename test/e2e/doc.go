// Package e2e holds strata's end-to-end tests: they build the strata binary,
// run it as a user would (real runc, overlayfs, Debian's docker-registry,
// skopeo and umoci) and check what it produces. They need root and runc and
// skip otherwise.
//
//	go test -count=1 ./test/e2e/ -v
package e2e
