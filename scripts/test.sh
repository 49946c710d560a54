#!/usr/bin/env bash
# test.sh - the whole test suite: vet, staticcheck, unit tests, the end-to-end,
# conformance (on both snapshotters) and reliability tests (real runc, overlayfs, skopeo, umoci,
# docker-registry, chromium; needs root), then each fuzzer for a bounded time
# (FUZZTIME, default 15s; 0 skips them). As root it first installs the Debian
# packages the tests use, when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# Go installed from go.dev lives in /usr/local/go, often not on root's PATH.
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
[ "$(id -u)" -ne 0 ] || scripts/install-deps.sh
go vet ./...
go tool staticcheck ./...   # pinned in go.mod (tool directive)
go test -count=1 -timeout 30m ./...
# The layer writer's pipeline (members compressed, copied and hashed on
# several goroutines, buffers passed between them) under the race detector.
go test -count=1 -race -run '^TestCommit' ./internal/layer/
# The Kubernetes and CI examples: a module of their own (so the Kubernetes
# libraries stay out of go.mod), which ./... above does not enter.
(cd examples/kubernetes && go vet ./... && go test -count=1 ./...)
# The conformance cases once more on the native snapshotter (no mounts):
# both snapshotters must build what BuildKit builds.
STRATA_SNAPSHOTTER=native go test -count=1 -timeout 15m ./test/conformance/
# And as an ordinary user (rootless mode: a user namespace with the user's
# /etc/subuid range, overlay and runc inside it): the same images.
STRATA_TEST_ROOTLESS=1 go test -count=1 -timeout 15m -run '^TestConformance$' ./test/conformance/
# And inside an unprivileged container (strata run: Docker's default
# capabilities and seccomp, no mount, no user namespace): chroot isolation.
STRATA_TEST_IN_CONTAINER=1 go test -count=1 -timeout 15m -run '^TestConformance$' ./test/conformance/
fuzztime=${FUZZTIME:-15s}
if [ "$fuzztime" != 0 ]; then
  go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "$fuzztime" -fuzzminimizetime 2s ./internal/dockerfile/
  go test -run '^$' -fuzz '^FuzzApply$' -fuzztime "$fuzztime" -fuzzminimizetime 2s ./internal/layer/
fi
