#!/usr/bin/env bash
# Installs (or upgrades) Weft with Helm into the cluster of the current kubeconfig, as a
# platform team would: the CRDs chart, then the control-plane chart, then `weft check`.
# cert-manager must be running (config/cert-manager). Not run by make test; the local
# cluster e2e calls it. Usage:
#   hack/helm-install.sh [--gateway-api] [extra helm flags for the weft chart...]
#     --gateway-api   also install the Gateway API standard-channel CRDs (weft-crds
#                     gatewayAPI.install=standard):
#                     only those absent, or this release's and not newer than the chart's
# Environment: HELM (default bin/helm, built by `make helm`), WEFT (default bin/weft),
# CHECK_WAIT (default 5m), HELM_WAIT (Helm's --wait strategy, default watcher: every
# object ready, kstatus), MESH (the Mesh applied when none exists, default
# config/samples/mesh.yaml; "none" applies nothing and `weft check` then says so).
set -euo pipefail
cd "$(dirname "$0")/.."

helm="${HELM:-bin/helm}"
weft="${WEFT:-bin/weft}"
wait="${CHECK_WAIT:-5m}"
helm_wait="${HELM_WAIT:-watcher}"
mesh="${MESH:-config/samples/mesh.yaml}"
[ -x "$helm" ] || { echo "hack/helm-install.sh: $helm not found; run make helm" >&2; exit 1; }
[ -x "$weft" ] || { echo "hack/helm-install.sh: $weft not found; run make build" >&2; exit 1; }

gateway=false
if [ "${1:-}" = "--gateway-api" ]; then gateway=standard; shift; fi

# 1. CRDs: a release of its own, so the control plane can be removed or rolled back
# without touching them (they are kept on uninstall: helm.sh/resource-policy keep).
"$helm" upgrade --install weft-crds config/helm/weft-crds \
  --namespace weft-system --create-namespace \
  --set gatewayAPI.install="$gateway" --wait="$helm_wait" --timeout 2m

# 2. The namespace: Helm stores the release in it, so it must exist before the weft
# release; it is applied from the chart's own template (with its labels) and left
# outside the release, so `helm uninstall weft` does not delete what is in it.
"$helm" template weft config/helm/weft --namespace weft-system \
  --show-only templates/namespace.yaml | kubectl apply --server-side -f -

# 3. The control plane. --wait: the Deployment's replicas are ready (readiness covers
# the webhook server, identity and destination).
"$helm" upgrade --install weft config/helm/weft --namespace weft-system \
  --set namespace.create=false --wait="$helm_wait" --timeout 5m "$@"

# 4. A Mesh (user content, not part of either chart), unless one exists; then what a
# user runs next.
if [ "$mesh" != none ] && ! kubectl get meshes.mesh.weft.dev default >/dev/null 2>&1; then
  kubectl apply -f "$mesh"
fi
"$weft" check --wait "$wait"
