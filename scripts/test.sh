#!/usr/bin/env bash
# test.sh - the whole test suite: vet, unit tests and the end-to-end tests
# (real runc, overlayfs, skopeo, umoci and docker-registry; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
go test -count=1 -timeout 30m ./...
