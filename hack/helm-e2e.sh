#!/usr/bin/env bash
# Installs Weft with Helm on the local cluster, as a platform team would, then upgrades
# it, and requires `weft check` to pass after each: cluster up (hack/cluster/up.sh) ->
# images (hack/images.sh) -> cert-manager (config/cert-manager) -> hack/helm-install.sh
# (the CRDs chart with the Gateway API CRDs, then the control-plane chart) -> the same
# again with 3 replicas (helm upgrade) -> tear down (hack/cluster/down.sh, which checks
# nothing is left). HELM_E2E_KEEP=1 leaves the cluster up.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP="${HELM_E2E_KEEP:-0}"

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$KEEP" = 1 ]; then
    printf '\nhelm-e2e: the cluster is left up (HELM_E2E_KEEP=1): eval "$(hack/cluster/env.sh)"\n'
  else
    printf '\n==> Tearing the cluster down\n'
    hack/cluster/down.sh || rc=1
  fi
  [ "$rc" = 0 ] && echo "helm-e2e: PASS" || echo "helm-e2e: FAIL"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

go build -o bin/weft ./cmd/weft
make helm >/dev/null
printf '==> Cluster and images\n'
hack/cluster/up.sh
eval "$(hack/cluster/env.sh)"
export KUBECONFIG
hack/images.sh

printf '\n==> cert-manager (config/cert-manager)\n'
kubectl apply --server-side --force-conflicts -k config/cert-manager >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
for d in $(kubectl get -k config/cert-manager -o jsonpath='{range .items[?(@.kind=="Deployment")]}{.metadata.namespace}/{.metadata.name}{" "}{end}'); do
  kubectl -n "${d%%/*}" rollout status "deploy/${d#*/}" --timeout=180s
done

printf '\n==> helm install (hack/helm-install.sh --gateway-api)\n'
hack/helm-install.sh --gateway-api
printf '\n==> helm upgrade to 3 replicas\n'
hack/helm-install.sh --gateway-api --set replicas=3
bin/helm list -n weft-system
kubectl -n weft-system rollout status deploy/weft-controller --timeout=120s
[ "$(kubectl -n weft-system get deploy/weft-controller -o jsonpath='{.status.readyReplicas}')" = 3 ] ||
  { echo "helm-e2e: the upgrade did not bring weft-controller to 3 ready replicas" >&2; exit 1; }
