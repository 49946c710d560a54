#!/usr/bin/env bash
# test.sh - the whole test suite: vet, unit tests, the end-to-end,
# conformance and reliability tests (real runc, overlayfs, skopeo, umoci,
# docker-registry, chromium; needs root), then each fuzzer for a bounded time
# (FUZZTIME, default 15s; 0 skips them).
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
go test -count=1 -timeout 30m ./...
fuzztime=${FUZZTIME:-15s}
if [ "$fuzztime" != 0 ]; then
  go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "$fuzztime" -fuzzminimizetime 2s ./internal/dockerfile/
  go test -run '^$' -fuzz '^FuzzApply$' -fuzztime "$fuzztime" -fuzzminimizetime 2s ./internal/layer/
fi
