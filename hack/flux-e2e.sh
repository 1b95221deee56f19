#!/usr/bin/env bash
# make flux-e2e: Flux installs Weft from Git on the local cluster. Flux's
# source-controller and kustomize-controller (hack/flux/build.sh: built from the Go
# module proxy, run as processes here) apply config/default and a Mesh from a Git
# repository served on loopback, with config/gitops/flux's Kustomization, and must report
# Ready; then fail with Weft's message on a broken object; then recover
# (test/gitops TestFluxInstallsWeft). Cluster up -> images -> cert-manager -> the test ->
# tear down. FLUX_E2E_KEEP=1 leaves the cluster up.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP="${FLUX_E2E_KEEP:-0}"
FLUX_VERSION="${FLUX_VERSION:-v1.9.6}"

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$KEEP" = 1 ]; then
    printf '\nflux-e2e: the cluster is left up (FLUX_E2E_KEEP=1): eval "$(hack/cluster/env.sh)"\n'
  else
    printf '\n==> Tearing the cluster down\n'
    hack/cluster/down.sh || rc=1
  fi
  [ "$rc" = 0 ] && echo "flux-e2e: PASS" || echo "flux-e2e: FAIL"
  exit "$rc"
}

printf '==> Flux %s controllers (hack/flux/build.sh; cached in bin/flux)\n' "$FLUX_VERSION"
start=$(date +%s)
FLUX_BIN="$(FLUX_VERSION="$FLUX_VERSION" hack/flux/build.sh)"
echo "    $(( $(date +%s) - start ))s"

trap teardown EXIT
trap 'exit 130' INT TERM
printf '\n==> Cluster and images\n'
hack/cluster/up.sh
eval "$(hack/cluster/env.sh)"
export KUBECONFIG
hack/images.sh

printf '\n==> cert-manager (config/cert-manager)\n'
hack/cluster/cert-manager.sh

printf '\n==> Flux applies Weft from Git (TestFluxInstallsWeft)\n'
WEFT_FLUX_E2E_KUBECONFIG="$KUBECONFIG" WEFT_FLUX_BIN="$PWD/$FLUX_BIN" WEFT_FLUX_VERSION="$FLUX_VERSION" \
  go test ./test/gitops -run '^TestFluxInstallsWeft$' -count=1 -v -timeout 15m
