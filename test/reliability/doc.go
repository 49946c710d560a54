// Package reliability holds strata's fault and hostile-input tests: kill -9
// and Ctrl-C at random points of builds, pulls and pushes; a registry behind
// a loopback proxy that injects 500s, connection resets, slow responses and
// truncated bodies; a store on a full disk; base images, build contexts and
// archives crafted to write outside the rootfs; secrets that must not leak;
// concurrent builds on one store. After every fault the store must be whole
// (strata fsck), and nothing (mounts, runc containers, sessions) may be left.
//
// The tests build the strata binary and run it as a user would. They need
// root and runc and skip otherwise. The whole group runs in about two minutes;
// knobs:
//
//	STRATA_RELIABILITY_KILLS=N   kills per kill scenario (default 8)
//	STRATA_RELIABILITY_SEED=S    random seed (printed by every run)
//	STRATA_RELIABILITY_REPORT=F  write the closing counts to the file F
//	STRATA_RELIABILITY_BIN=PATH  test this strata binary instead of building one
//
//	go test -count=1 ./test/reliability/ -v
package reliability
