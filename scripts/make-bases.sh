#!/usr/bin/env bash
# make-bases.sh - import the demo's base images into the strata store, offline:
#   busybox:latest  from Debian's busybox-static (/bin/busybox and its applets)
#   golang:1.26     busybox plus the local Go toolchain (GOROOT of `go env`)
# Usage: scripts/make-bases.sh [STRATA]   (STRATA defaults to bin/strata)
# They go to strata's store (STRATA_ROOT, else the default): the golang image
# is no real golang (no make, no git), so keep it out of a store you build in.
set -euo pipefail
STRATA=${1:-${STRATA:-bin/strata}}
BUSYBOX=${BUSYBOX:-/bin/busybox}
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH   # Go from go.dev, not on PATH
[ -x "$BUSYBOX" ] || { echo "make-bases: $BUSYBOX missing (apt-get install busybox-static)" >&2; exit 1; }
GOROOT_DIR=$(go env GOROOT)
GOVER=$(go env GOVERSION)   # go1.26.8
GOTAG=$(echo "${GOVER#go}" | cut -d. -f1,2)
work=$(mktemp -d "${TMPDIR:-/tmp}/strata-bases.XXXXXX")
trap 'rm -rf "$work"' EXIT

root=$work/busybox
mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,root,home,usr/local,var}
cp "$BUSYBOX" "$root/bin/busybox"
for a in $("$BUSYBOX" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"; chmod 0700 "$root/root"
# Fixed times make the bases identical on every run of this script.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1577836800}
PATHV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"$STRATA" import --change 'CMD ["sh"]' --change "ENV PATH=$PATHV" "$root" busybox:latest >/dev/null
echo "make-bases: busybox:latest imported ($("$BUSYBOX" | head -1 | cut -d' ' -f1-2))"

# golang: the busybox tree plus GOROOT (hard links: no copy of the toolchain's bytes).
mkdir -p "$root/usr/local/go" "$root/go/bin" "$root/go/src"
cp -al "$GOROOT_DIR/." "$root/usr/local/go/" 2>/dev/null || cp -a "$GOROOT_DIR/." "$root/usr/local/go/"
chmod 0777 "$root/go"
"$STRATA" import \
  --change "ENV GOLANG_VERSION=${GOVER#go}" --change 'ENV GOTOOLCHAIN=local' --change 'ENV GOPATH=/go' \
  --change "ENV PATH=/go/bin:/usr/local/go/bin:$PATHV" --change 'WORKDIR /go' --change 'CMD ["sh"]' \
  "$root" "golang:$GOTAG" >/dev/null
echo "make-bases: golang:$GOTAG imported ($GOVER from $GOROOT_DIR)"
