#!/usr/bin/env bash
# make e2e: the end-to-end suite on the local cluster.
#
#   cluster up (hack/cluster/up.sh: reuses a healthy one) -> images (hack/images.sh)
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
part_start=$T0
part() { # records the time of the part that just ended
  local now; now=$(date +%s)
  PARTS+=("$(printf '%-28s %5ss' "$1" "$((now - part_start))")")
  part_start=$now
}
summary() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$KEEP" = 1 ]; then
    printf '\ne2e: the cluster is left up (E2E_KEEP=1): eval "$(hack/cluster/env.sh)"\n'
  else
    printf '\n==> Tearing the cluster down (hack/cluster/down.sh checks nothing is left)\n'
    if hack/cluster/down.sh; then part "teardown + leftover check"; else rc=1; part "teardown (FAILED: leftovers)"; fi
  fi
  printf '\ne2e: time per part\n'
  printf '  %s\n' "${PARTS[@]}"
  printf '  %-28s %5ss\n' total "$(( $(date +%s) - T0 ))"
  [ "$rc" = 0 ] && echo "e2e: PASS" || echo "e2e: FAIL"
  exit "$rc"
}
trap summary EXIT
trap 'exit 130' INT TERM

printf '==> Building the weft CLI\n'
go build -o bin/weft ./cmd/weft
part "build weft CLI"

printf '\n==> Cluster (hack/cluster/up.sh)\n'
hack/cluster/up.sh
eval "$(hack/cluster/env.sh)"
export KUBECONFIG
part "cluster up"

printf '\n==> Images (hack/images.sh)\n'
hack/images.sh
part "images"

WEFT="$PWD/bin/weft" hack/demo/install.sh
part "install (cert-manager, Weft, Mesh, demo)"

printf '\n==> go test ./test/e2e/...\n'
WEFT_E2E_KUBECONFIG="$KUBECONFIG" WEFT_E2E_KEEP="$([ "$KEEP" = 1 ] && echo 1 || true)" \
  go test ./test/e2e/... -count=1 -v -timeout "${E2E_TIMEOUT:-15m}" ${E2E_RUN:+-run "$E2E_RUN"}
part "go test ./test/e2e"
