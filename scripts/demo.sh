#!/usr/bin/env bash
# demo.sh - the main job, offline: install what is missing, build strata,
# import busybox and a golang:1.26 image made from the local Go toolchain,
# build examples/seed (multi-stage: go build, then only the binary on scratch),
# run the result and print both image sizes.
#
# Run it as root (it installs Debian packages and runs runc). It leaves
# bin/strata and a store of its own, STRATA_DEMO_ROOT (default
# /var/lib/strata-demo), never strata's default store: the demo's golang:1.26
# is busybox plus the host's Go (no make, no git) and must not stand in for
# the real image in your own builds. Delete the demo's store with
#   rm -rf /var/lib/strata-demo
set -euo pipefail
cd "$(dirname "$0")/.."
# Go installed from go.dev lives in /usr/local/go, often not on root's PATH.
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || { echo "demo: no go on PATH or in /usr/local/go/bin: install Go >= 1.26 from https://go.dev/dl" >&2; exit 1; }
start=$SECONDS
scripts/install-deps.sh
mkdir -p bin
go build -o bin/strata ./cmd/strata
echo "== built $PWD/bin/strata"
if [ "$(id -u)" -eq 0 ]; then
  demo_root=${STRATA_DEMO_ROOT:-/var/lib/strata-demo}
else
  demo_root=${STRATA_DEMO_ROOT:-${XDG_DATA_HOME:-$HOME/.local/share}/strata-demo}
fi
export STRATA_ROOT=$demo_root
echo "== store: $STRATA_ROOT (the demo's own; strata's default store is not touched)"
scripts/make-bases.sh bin/strata
echo "== strata build -t seed:latest examples/seed"
time bin/strata build -t seed:latest examples/seed
echo "== strata run seed:latest version"
bin/strata run seed:latest version
echo "== image sizes"
bin/strata images | awk 'NR == 1 || $1 == "golang" || $1 == "seed"'
cat <<MSG
== done in $((SECONDS - start)) s. Left behind: bin/strata, and the demo's store $STRATA_ROOT
   (busybox:latest, golang:1.26 = busybox + this host's Go, seed:latest, build cache).
   Look at it:  STRATA_ROOT=$STRATA_ROOT bin/strata images
   Delete it:   rm -rf $STRATA_ROOT
MSG
