#!/bin/sh
# shard.sh - one shard of a release: what each pod of release-job.yaml's
# Indexed Job runs (from the strata-release-scripts ConfigMap that
# release.sh makes of this file). Pod N builds the Nth platform of
# PLATFORMS, sharing one registry cache with the other shards, pushes the
# image by digest (no tag to race for) and writes NAME@DIGEST to its
# termination message, where release.sh collects it for the join.
#
# Environment:
#   JOB_COMPLETION_INDEX  the pod's index (Kubernetes sets it in an Indexed Job)
#   PLATFORMS             the release's platforms, one per index: "linux/amd64 linux/arm64"
#   IMAGE_REPO            the repository the shards are pushed to by digest
#   CACHE_REF             the registry cache all shards share (mode=max)
#   CACHE_BOUNDS          what the shared cache keeps (default max-size=20GB,max-age=14d)
#   CONTEXT               the build context folder
#   TERMINATION_LOG       where NAME@DIGEST goes (default /dev/termination-log)
#   STRATA_ISOLATION      chroot in an unprivileged pod (auto finds it too)
set -eu
index=${JOB_COMPLETION_INDEX:?not a pod of an Indexed Job}
# shellcheck disable=SC2086 # PLATFORMS is a list
set -- $PLATFORMS
if [ "$index" -ge "$#" ]; then
  echo "shard $index: PLATFORMS names only $# platforms" >&2
  exit 1
fi
shift "$index"
platform=$1
meta=${TMPDIR:-/tmp}/shard-$index.json
strata build --progress=plain --platform "$platform" \
  --cache-from "type=registry,ref=$CACHE_REF" \
  --cache-to "type=registry,ref=$CACHE_REF,mode=max,${CACHE_BOUNDS:-max-size=20GB,max-age=14d}" \
  --output "type=registry,name=$IMAGE_REPO,push-by-digest=true" \
  --metadata-file "$meta" "$CONTEXT"
digest=$(sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]*\)".*/\1/p' "$meta")
if [ -z "$digest" ]; then
  echo "shard $index: no image digest in $meta" >&2
  exit 1
fi
echo "$IMAGE_REPO@$digest" >"${TERMINATION_LOG:-/dev/termination-log}"
echo "shard $index ($platform): pushed $IMAGE_REPO@$digest"
