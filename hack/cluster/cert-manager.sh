#!/usr/bin/env bash
# Installs cert-manager (config/cert-manager: its CRDs and weft-cert-manager, built from
# the Go module) into the cluster of $KUBECONFIG and waits until its Deployments are
# available. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KUBECONFIG:?KUBECONFIG must name the cluster (eval \"\$(hack/cluster/env.sh)\")}"
kubectl apply --server-side --force-conflicts -k config/cert-manager >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
for d in $(kubectl get -k config/cert-manager -o jsonpath='{range .items[?(@.kind=="Deployment")]}{.metadata.namespace}/{.metadata.name}{" "}{end}'); do
  kubectl -n "${d%%/*}" rollout status "deploy/${d#*/}" --timeout=180s ||
    { echo "cert-manager.sh: deployment $d is not available" >&2; exit 1; }
done
