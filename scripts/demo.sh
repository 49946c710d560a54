#!/usr/bin/env bash
# demo.sh - the main job, offline: install what is missing, build strata,
# import busybox and a golang:1.26 image made from the local Go toolchain,
# build examples/seed (multi-stage: go build, then only the binary on scratch),
# run the result and print both image sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
mkdir -p bin
go build -o bin/strata ./cmd/strata
export STRATA_ROOT=${STRATA_ROOT:-/var/lib/strata}
echo "== store: $STRATA_ROOT"
scripts/make-bases.sh bin/strata
echo "== strata build -t seed:latest examples/seed"
time bin/strata build -t seed:latest examples/seed
echo "== strata run seed:latest version"
bin/strata run seed:latest version
echo "== image sizes"
bin/strata images | awk 'NR == 1 || $1 == "golang" || $1 == "seed"'
