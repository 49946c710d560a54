#!/usr/bin/env bash
# install-deps.sh - install the Debian packages strata and its tests use, when missing.
set -euo pipefail
pkgs=(runc busybox-static slirp4netns uidmap skopeo docker-registry umoci ca-certificates git chromium graphviz bash-completion groff-base)
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
