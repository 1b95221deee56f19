#!/usr/bin/env bash
# make e2e: the end-to-end suite on the local cluster.
#
#   cluster up (hack/cluster/up.sh: reuses a healthy one) -> images (hack/images.sh,
#   and the jaeger image for TestTracing)
#   -> install as make demo does (hack/demo/install.sh) -> go test ./test/e2e/...
#   -> tear down (hack/cluster/down.sh, which then checks that nothing is left)
#
#   E2E_KEEP=1        leave the cluster (and the suite's namespace) up afterwards
#   E2E_RUN=regexp    run only the matching tests (go test -run)
#   E2E_TIMEOUT=15m   go test's timeout
# Prints the time of each part at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP="${E2E_KEEP:-0}"
declare -a PARTS=()
T0=$(date +%s)
CURRENT="" part_start=$T0
begin() { CURRENT="$1"; part_start=$(date +%s); }
end() { # records the time of the current part; $1 (optional) qualifies it
  PARTS+=("$(printf '%-40s %5ss' "$CURRENT${1:+ ($1)}" "$(( $(date +%s) - part_start ))")")
  CURRENT=""
}
summary() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$CURRENT" ] && end FAILED
  if [ "$KEEP" = 1 ]; then
    printf '\ne2e: the cluster is left up (E2E_KEEP=1): eval "$(hack/cluster/env.sh)"\n'
  else
    printf '\n==> Tearing the cluster down (hack/cluster/down.sh checks nothing is left)\n'
    begin "teardown + leftover check"
    if hack/cluster/down.sh; then end; else rc=1; end "FAILED: something is left"; fi
  fi
  printf '\ne2e: time per part\n'
  printf '  %s\n' "${PARTS[@]}"
  printf '  %-40s %5ss\n' total "$(( $(date +%s) - T0 ))"
  [ "$rc" = 0 ] && echo "e2e: PASS" || echo "e2e: FAIL"
  exit "$rc"
}
trap summary EXIT
trap 'exit 130' INT TERM

begin "build weft CLI"
printf '==> Building the weft CLI\n'
go build -o bin/weft ./cmd/weft
end

begin "cluster up"
printf '\n==> Cluster (hack/cluster/up.sh)\n'
hack/cluster/up.sh
eval "$(hack/cluster/env.sh)"
export KUBECONFIG
end

begin "images"
printf '\n==> Images (hack/images.sh)\n'
hack/images.sh
end

# TestTracing's collector. Its own part: cold, Jaeger builds from the Go module proxy
# for many minutes (hack/jaeger.sh), then comes from the cache.
begin "jaeger image"
printf '\n==> Jaeger image (hack/images.sh jaeger)\n'
hack/images.sh jaeger
end

begin "install (cert-manager, Weft, Mesh, demo)"
WEFT="$PWD/bin/weft" hack/demo/install.sh
end

begin "go test ./test/e2e"
printf '\n==> go test ./test/e2e/...\n'
WEFT_E2E_KUBECONFIG="$KUBECONFIG" WEFT_E2E_KEEP="$([ "$KEEP" = 1 ] && echo 1 || true)" \
  go test ./test/e2e/... -count=1 -v -timeout "${E2E_TIMEOUT:-15m}" ${E2E_RUN:+-run "$E2E_RUN"}
end
