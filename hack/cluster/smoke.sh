#!/usr/bin/env bash
# Proves the local cluster end to end and prints how long each step took:
#   cluster up → images → cert-manager (config/cert-manager) → Weft (config/default) →
#   Mesh Ready → webhook caBundle injected → a pod in a namespace labelled
#   weft.dev/inject=enabled is injected (weft-init + native weft-proxy sidecar) and Ready.
# The test namespace is deleted at the end; the cluster and the installs stay.
#
#   hack/cluster/smoke.sh
set -euo pipefail
LOG_TAG=smoke
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

T0="$(now_ms)"
last="$T0"
step() { local t; t="$(now_ms)"; log "$(printf '%-44s %6d ms  (total %3d s)' "$*" $((t - last)) $(((t - T0) / 1000)))"; last="$t"; }
fail() { log "FAILED: $*"; exit 1; }

"$HACK_CLUSTER/up.sh" >/dev/null
eval "$("$HACK_CLUSTER/env.sh")"
step "cluster up"
"$REPO_ROOT/hack/images.sh" >/dev/null
step "images built and imported"

kubectl apply --server-side --force-conflicts -k config/cert-manager >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl -n cert-manager rollout status deploy/weft-cert-manager --timeout=180s >/dev/null ||
  fail "weft-cert-manager is not available: kubectl -n cert-manager describe pods"
step "cert-manager available"

kubectl apply --server-side --force-conflicts -k config/default >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl -n weft-system rollout status deploy/weft-controller --timeout=180s >/dev/null ||
  fail "weft-controller is not available: kubectl -n weft-system describe pods"
step "weft-controller available"

kubectl apply -f config/samples/mesh.yaml >/dev/null
kubectl wait --for=condition=Ready mesh/default --timeout=120s >/dev/null || fail "the Mesh is not Ready: kubectl describe mesh default"
step "Mesh Ready"
for w in mutatingwebhookconfiguration/weft-injector validatingwebhookconfiguration/weft-validator; do
  kubectl wait --for=jsonpath='{.webhooks[0].clientConfig.caBundle}' "$w" --timeout=60s >/dev/null ||
    fail "$w has no caBundle: is the CA injector running? kubectl -n cert-manager logs deploy/weft-cert-manager"
done
step "webhook caBundles injected"

ns=weft-cluster-smoke
kubectl delete namespace "$ns" --ignore-not-found --wait >/dev/null
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
  labels: {weft.dev/inject: enabled}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: $ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: smoke}}
  template:
    metadata: {labels: {app: smoke}}
    spec:
      containers:
      # Any program serves as the application; the sandbox image is always there.
      - name: app
        image: pause:dev
        imagePullPolicy: IfNotPresent
EOF
kubectl -n "$ns" rollout status deploy/app --timeout=180s >/dev/null ||
  fail "the injected pod is not Ready: kubectl -n $ns describe pods"
spec="$(kubectl -n "$ns" get pods -l app=smoke -o jsonpath='{range .items[0].spec.initContainers[*]}{.name}/{.restartPolicy} {end}')"
case "$spec" in
  *weft-init/*weft-proxy/Always*) ;;
  *) fail "the pod was not injected as expected: init containers: $spec" ;;
esac
step "injected pod Ready ($spec)"
kubectl delete namespace "$ns" --wait=false >/dev/null
log "all steps passed in $(( ($(now_ms) - T0) / 1000 )) s"
