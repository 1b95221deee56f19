#!/usr/bin/env bash
# Installs what make demo and make e2e run on the local cluster, the way a user would:
# cert-manager (config/cert-manager), the Gateway API CRDs unless a compatible version
# is present (`weft install --gateway-api-only`: the standard channel when absent, an
# upgrade when older, nothing when the same or newer), Weft (config/default), the Mesh
# (config/samples/mesh.yaml), then the demo application (config/demo), waiting for each
# to be ready and running `weft check`. Idempotent (kubectl apply).
#
#   KUBECONFIG  the cluster (hack/cluster/env.sh prints it)
#   WEFT        the weft CLI (default: bin/weft, built if missing)
#   WEFT_CONTROLLER_REPLICAS  scale weft-controller to this many replicas after applying
#               config/default (default: as config/default says). A workaround knob for
#               debugging, e.g. 1 while non-leader replicas cannot become Ready.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KUBECONFIG:?KUBECONFIG must name the cluster (eval \"\$(hack/cluster/env.sh)\")}"
WEFT="${WEFT:-$PWD/bin/weft}"
[ -x "$WEFT" ] || go build -o "$WEFT" ./cmd/weft

T0=${WEFT_STEPS_T0:-$(date +%s)} # make demo passes its start, so the step times continue
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
fail() {
  printf '\ninstall: FAILED: %s\n\n' "$*" >&2
  kubectl get pods -A -o wide >&2 || true
  "$WEFT" check >&2 || true
  exit 1
}

step "Installing cert-manager (config/cert-manager)"
kubectl apply --server-side --force-conflicts -k config/cert-manager >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
for d in $(kubectl get -k config/cert-manager -o jsonpath='{range .items[?(@.kind=="Deployment")]}{.metadata.namespace}/{.metadata.name}{" "}{end}'); do
  kubectl -n "${d%%/*}" rollout status "deploy/${d#*/}" --timeout=180s || fail "cert-manager deployment $d is not available"
done

# Before Weft, so that weft-controller starts with routes (without them it runs, serves
# no routes, and restarts once they appear).
step "Installing the Gateway API CRDs unless present (weft install --gateway-api-only)"
"$WEFT" install --gateway-api-only --gateway-api=auto || fail "installing the Gateway API CRDs"

step "Installing Weft (config/default)"
kubectl apply --server-side --force-conflicts -k config/default >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
if [ -n "${WEFT_CONTROLLER_REPLICAS:-}" ]; then
  echo "    scaling weft-controller to $WEFT_CONTROLLER_REPLICAS replicas (WEFT_CONTROLLER_REPLICAS)"
  kubectl -n weft-system scale deploy/weft-controller --replicas="$WEFT_CONTROLLER_REPLICAS" >/dev/null
fi
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
step "Installed"
