#!/usr/bin/env bash
# run.sh - strata's benchmark harness: times strata against BuildKit (buildctl +
# buildkitd), buildah and Docker's BuildKit, whichever are installed, on the
# workloads described in bench/README.md. Needs root.
#
#   sudo bench/run.sh [--rounds N] [--large-rounds N] [--only REGEX]
#                     [--builders strata,buildkit,buildah,docker] [--keep]
#
# Prints a markdown table of medians and strata/other ratios and writes it to
# bench/results.md; logs of every build are in bench/.work/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/.work
go build -o bench/.work/bench ./bench
exec bench/.work/bench "$@"
