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
  if [ "$KEEP" = 1 ]; then
    if [ -n "${KUBECONFIG:-}" ]; then
      printf '\nThe cluster keeps running (DEMO_KEEP=1). Use it with:\n'
      printf '  export KUBECONFIG=%s\n' "$KUBECONFIG"
      printf '  kubectl -n weft-demo get pods\n'
      printf '  bin/weft check\n'
      printf '  bin/weft stat deploy -n weft-demo --watch\n'
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

step "Installing cert-manager (config/cert-manager)"
kubectl apply --server-side -k config/cert-manager >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
for d in $(kubectl get -k config/cert-manager -o jsonpath='{range .items[?(@.kind=="Deployment")]}{.metadata.namespace}/{.metadata.name}{" "}{end}'); do
  kubectl -n "${d%%/*}" rollout status "deploy/${d#*/}" --timeout=180s || fail "cert-manager deployment $d is not available"
done

step "Installing Weft (config/default)"
kubectl apply --server-side -k config/default >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl -n weft-system rollout status deploy/weft-controller --timeout=180s || fail "weft-controller is not available"

step "Applying the Mesh (config/samples/mesh.yaml): cert-manager issues the trust anchor and identity issuer"
kubectl apply -f config/samples/mesh.yaml >/dev/null
kubectl wait --for=condition=Ready mesh/default --timeout=120s || fail "the Mesh is not Ready: kubectl describe mesh default"

step "Checking the control plane (weft check)"
"$WEFT" check --wait 120s || fail "weft check failed"

step "Deploying the demo application (config/demo)"
kubectl apply -k config/demo
for d in $(kubectl -n weft-demo get deploy -o jsonpath='{.items[*].metadata.name}'); do
  kubectl -n weft-demo rollout status "deploy/$d" --timeout=180s || fail "deploy/$d in weft-demo is not ready"
done
kubectl -n weft-demo get pods -o wide

step "Checking the mesh with the application (weft check)"
"$WEFT" check --wait 60s || fail "weft check failed"

if [ "$REFRESHES" = 0 ]; then
  step "Golden metrics per deployment, from the proxies (weft stat deploy -n weft-demo --watch); Ctrl-C ends the demo"
else
  step "Golden metrics per deployment, from the proxies ($REFRESHES refreshes of weft stat deploy -n weft-demo --watch)"
fi
echo "    (in another terminal: export KUBECONFIG=$KUBECONFIG)"
"$WEFT" stat deploy -n weft-demo --watch --interval "$INTERVAL" --count "$REFRESHES" || true
step "Done"
