#!/bin/sh
# release.sh - build one release as shards and join them: run where
# kubectl reaches the cluster (a CI job, a workstation).
#   1. the strata-release-scripts ConfigMap is made of shard.sh;
#   2. release-job.yaml's Indexed Job builds one platform per pod, all
#      sharing one registry cache, each pushing its image by digest;
#   3. the digests are read from the pods' termination messages;
#   4. release-join-job.yaml's Job joins them into one index under IMAGE
#      with strata manifest create --push.
# Usage: release.sh IMAGE   (IMAGE_REPO, PLATFORMS, CACHE_REF: release-job.yaml)
set -eu
image=${1:?usage: release.sh REGISTRY/REPO:TAG}
ns=${NAMESPACE:-strata-builds}
here=$(dirname "$0")
kubectl -n "$ns" create configmap strata-release-scripts --from-file=shard.sh="$here/shard.sh" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" delete job strata-release strata-release-join --ignore-not-found
kubectl apply -f "$here/release-job.yaml"
kubectl -n "$ns" wait --for=condition=complete job/strata-release --timeout=2h
shards=$(kubectl -n "$ns" get pods -l job-name=strata-release \
  --field-selector=status.phase=Succeeded \
  -o jsonpath='{range .items[*]}{.status.containerStatuses[?(@.name=="strata")].state.terminated.message}{" "}{end}')
echo "shards: $shards"
sed -e "s|@IMAGE@|$image|" -e "s|@SHARDS@|$shards|" "$here/release-join-job.yaml" | kubectl apply -f -
kubectl -n "$ns" wait --for=condition=complete job/strata-release-join --timeout=30m
kubectl -n "$ns" logs job/strata-release-join
