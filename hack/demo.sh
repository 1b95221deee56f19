#!/usr/bin/env bash
# make demo: the whole mesh on a local single-node Kubernetes, from nothing.
#
#   cluster (hack/cluster/up.sh) -> images (hack/images.sh) -> cert-manager
#   -> Weft (config/default) -> Mesh (config/samples/mesh.yaml) -> the demo application
#   (config/demo) -> weft check -> weft stat deploy -n weft-demo --watch
#
# Ctrl-C stops the metrics view and tears the cluster down (hack/cluster/down.sh).
#   DEMO_KEEP=1       leave the cluster running and print how to use kubectl
#   DEMO_REFRESHES=N  stop after N refreshes (default: until Ctrl-C on a terminal, 3 when
#                     CI=true or stdout is not a terminal)
#   DEMO_INTERVAL=5s  the metrics window
#   DEMO_PROMETHEUS=1 also run a real Prometheus on the host (hack/prometheus.sh, Debian's
#                     prometheus) scraping the proxies and the controller with
#                     config/prometheus/scrape-config.yaml; its URL is printed
#   --local           the earlier demo without a cluster: a local API server, the control
#                     plane in-process and two proxies on loopback (hack/demo, `make demo-local`)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

if [ "${1:-}" = "--local" ]; then
  command -v kubectl >/dev/null || echo "demo: kubectl not found; status tables will be skipped" >&2
  exec go run ./hack/demo
fi

KEEP="${DEMO_KEEP:-0}"
INTERVAL="${DEMO_INTERVAL:-5s}"
if [ -n "${DEMO_REFRESHES:-}" ]; then
  REFRESHES="$DEMO_REFRESHES"
elif [ "${CI:-}" = true ] || [ ! -t 1 ]; then
  REFRESHES=3
else
  REFRESHES=0
fi

T0=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
fail() { printf '\ndemo: FAILED: %s\n' "$*" >&2; exit 1; }

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "${DEMO_PROMETHEUS:-0}" = 1 ] && [ "$KEEP" != 1 ]; then
    hack/prometheus.sh down || rc=1
  fi
  if [ "$KEEP" = 1 ]; then
    if [ -n "${KUBECONFIG:-}" ]; then
      printf '\nThe cluster keeps running (DEMO_KEEP=1). Use it with:\n'
      printf '  export KUBECONFIG=%s\n' "$KUBECONFIG"
      printf '  kubectl -n weft-demo get pods\n'
      printf '  bin/weft check\n'
      printf '  bin/weft stat deploy -n weft-demo --watch\n'
      if [ "${DEMO_PROMETHEUS:-0}" = 1 ]; then
        printf 'Prometheus: %s (stop it with: hack/prometheus.sh down)\n' "${PROM_URL:-}"
      fi
      printf 'Tear it down with: make cluster-down\n'
    fi
    exit "$rc"
  fi
  step "Tearing the cluster down (make demo DEMO_KEEP=1 keeps it)"
  hack/cluster/down.sh || rc=1
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

step "Building the weft CLI (bin/weft)"
go build -o bin/weft ./cmd/weft
WEFT="$REPO/bin/weft"

step "Starting the local cluster (hack/cluster/up.sh; the first run builds Kubernetes: ~15 min)"
hack/cluster/up.sh
eval "$(hack/cluster/env.sh)"
export KUBECONFIG

step "Building the images and importing them into the cluster (hack/images.sh)"
hack/images.sh

WEFT="$WEFT" WEFT_STEPS_T0="$T0" hack/demo/install.sh

if [ "${DEMO_PROMETHEUS:-0}" = 1 ]; then
  step "Starting Prometheus on the host (hack/prometheus.sh: config/prometheus/scrape-config.yaml)"
  PROM_URL=$(hack/prometheus.sh up) || fail "Prometheus did not start"
  echo "    Prometheus: $PROM_URL (dashboards: config/grafana, docs/observability.md)"
fi

if [ "$REFRESHES" = 0 ]; then
  step "Golden metrics per deployment, from the proxies (weft stat deploy -n weft-demo --watch); Ctrl-C ends the demo"
else
  step "Golden metrics per deployment, from the proxies ($REFRESHES refreshes of weft stat deploy -n weft-demo --watch)"
fi
echo "    (in another terminal: export KUBECONFIG=$KUBECONFIG)"
"$WEFT" stat deploy -n weft-demo --watch --interval "$INTERVAL" --count "$REFRESHES" || true
step "Done"
