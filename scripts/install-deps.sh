#!/usr/bin/env bash
# install-deps.sh - install the Debian packages strata and its tests use, when missing.
set -euo pipefail
pkgs=(runc busybox-static slirp4netns uidmap skopeo docker-registry umoci ca-certificates git chromium graphviz bash-completion groff-base qemu-user-static)
need=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The multi-platform tests' second architecture: Debian's busybox-static for
# arm64, unpacked (not installed) into a cache folder they look in.
arm64_busybox=${STRATA_ARM64_BUSYBOX_DIR:-/var/cache/strata-test/busybox-arm64}
if [ "$(id -u)" -eq 0 ] && [ ! -x "$arm64_busybox/bin/busybox" ]; then
  echo "install-deps: fetching busybox-static:arm64 into $arm64_busybox" >&2
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download -qq busybox-static:arm64 >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$tmp" && apt-get download -qq busybox-static:arm64 >/dev/null)
  fi
  mkdir -p "$arm64_busybox"
  dpkg-deb -x "$tmp"/busybox-static_*_arm64.deb "$arm64_busybox"
  rm -rf "$tmp"
fi
