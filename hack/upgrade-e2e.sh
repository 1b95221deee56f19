#!/usr/bin/env bash
# make upgrade-e2e: upgrades a running mesh from the previous release to this tree under
# steady load and fails on any failed request (docs/upgrades.md).
#
#   cluster up -> this tree's images (hack/images.sh, tag :dev) -> the previous release's
#   images built by ITS OWN hack/images.sh from a git worktree of the tag, under the image
#   tag of the release (:v0.1.0), so both versions coexist in containerd -> install the
#   release (cert-manager, its config/default, its Mesh, the demo) -> phases under load:
#     1 old          old control plane, old proxies
#     2 new-proxy    one workload (backend-v1) restarted with this tree's proxy while the
#                    old control plane still runs (new proxy, old control plane)
#     3 control      this tree's config/default applied (CRDs, then the controller
#                    rolls): old proxies against the new control plane
#     4a-d servers   each meshed server Deployment rolled (kubectl rollout restart) to the
#                    new proxy, one phase each: the v0.1.0 pods go away under load
#     5 client       the load generator itself rolled; its replacement measured
#     6 workaround   the preStop hook the upgrade from a release without the re-send
#                    needs (below) removed: every server rolls
#     7 restart      every server rolled again, this tree's proxies on both ends, no
#                    preStop hook: a plain rolling restart after the upgrade
#
# A proxy of a release without the re-send of requests no application saw (v0.1.0)
# loses the requests sent to its pod between its application's exit and the clients'
# learning that the endpoint went away, whichever end is old (measured: 5 and 6 failed
# requests when backend-v1 and grpc rolled, docs/upgrades.md). The documented workaround
# for such an upgrade is a preStop hook that delays the application's exit; the demo's
# servers get one (a 5 s sleep) until phase 6 removes it, and phase 7 restarts them
# without it. UPGRADE_PRESTOP=0 leaves it out, to measure the old release's losses (the
# run then fails).
#   -> tear down (hack/cluster/down.sh checks nothing is left).
#
# The load generator (config/demo's load Deployment, meshed, at UPGRADE_RPS) counts every
# request; each phase prints failed/total from its /stats. Any failed request fails the run.
# The demo's canary (backend-v2) fails 5% of requests on purpose; here it fails none, so
# every failure counted is the upgrade's.
#
#   UPGRADE_FROM=v0.1.0   the release to upgrade from (a git tag or commit of this repo)
#   UPGRADE_RPS=100       the load's rate
#   UPGRADE_KEEP=1        leave the cluster up afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
FROM="${UPGRADE_FROM:-v0.1.0}"
RPS="${UPGRADE_RPS:-100}"
KEEP="${UPGRADE_KEEP:-0}"
PRESTOP="${UPGRADE_PRESTOP:-1}"
SETTLE="${UPGRADE_SETTLE:-10}" # seconds of load measured after each phase's change settled

# v0.1.0 is the commit stop 24 landed; a clone made without tags still has the commit.
V0_1_0=b662fc643068aef4449f67da39627bf846524da5
if [ "$FROM" = v0.1.0 ] && ! git rev-parse -q --verify "v0.1.0^{commit}" >/dev/null &&
  git rev-parse -q --verify "$V0_1_0^{commit}" >/dev/null; then
  echo "upgrade-e2e: no tag v0.1.0 in this clone; using its commit $V0_1_0"
  git tag v0.1.0 "$V0_1_0"
fi
if ! git rev-parse -q --verify "$FROM^{commit}" >/dev/null; then
  echo "upgrade-e2e: FAIL: the previous release $FROM is not in this clone (git rev-parse $FROM failed)." >&2
  echo "  Fetch the tags (git fetch --tags) or set UPGRADE_FROM to a commit that exists." >&2
  exit 1
fi
# The image tag of the previous release: a valid tag made from the ref's name.
OLD_TAG="$(printf '%s' "$FROM" | tr -c 'A-Za-z0-9_.-' '-' | cut -c1-100)"

source hack/cluster/lib.sh # CLUSTER_DIR, the cluster's containerd
WORK="$(mktemp -d /tmp/weft-upgrade.XXXXXX)"
OLD="$WORK/weft-$OLD_TAG"

T0=$(date +%s)
declare -a REPORT=()
FAILED_TOTAL=0
summary() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" != 0 ] && [ -n "${KUBECONFIG:-}" ]; then
    kubectl get pods -A -o wide >&2 || true
  fi
  if [ "$KEEP" = 1 ]; then
    printf '\nupgrade-e2e: the cluster is left up (UPGRADE_KEEP=1): eval "$(hack/cluster/env.sh)"\n'
  else
    printf '\n==> Tearing the cluster down (hack/cluster/down.sh checks nothing is left)\n'
    hack/cluster/down.sh || rc=1
  fi
  git worktree remove --force "$OLD" 2>/dev/null || true
  rm -rf "$WORK"
  printf '\nupgrade-e2e: %s -> this tree (%s), load %s requests/s\n' "$FROM" "$(git rev-parse --short HEAD)" "$RPS"
  printf '  %s\n' "${REPORT[@]}"
  printf '  total time %ss\n' "$(( $(date +%s) - T0 ))"
  [ "$rc" = 0 ] && echo "upgrade-e2e: PASS" || echo "upgrade-e2e: FAIL"
  exit "$rc"
}
trap summary EXIT
trap 'exit 130' INT TERM
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
fail() { printf '\nupgrade-e2e: %s\n' "$*" >&2; exit 1; }

step "Previous release $FROM ($(git rev-parse --short "$FROM^{commit}")): git worktree in $OLD"
git worktree add --detach "$OLD" "$FROM^{commit}" >/dev/null
go build -o bin/weft ./cmd/weft
(cd "$OLD" && go build -o "$WORK/weft-old" ./cmd/weft)

step "Cluster (hack/cluster/up.sh)"
hack/cluster/up.sh
eval "$(hack/cluster/env.sh)"
export KUBECONFIG

step "This tree's images (hack/images.sh: :dev)"
hack/images.sh

step "The release's images, by its own hack/images.sh, tagged :$OLD_TAG"
# Its script names every image docker.io/library/<name>:dev; only the tag changes. Its
# cache is its own (WEFT_CACHE), the cluster is this one (WEFT_CLUSTER_DIR).
sed -i "s#docker.io/library/\$name:dev#docker.io/library/\$name:$OLD_TAG#; s#docker.io/library/\$w:dev#docker.io/library/\$w:$OLD_TAG#" "$OLD/hack/images.sh"
grep -q "library/\$name:$OLD_TAG" "$OLD/hack/images.sh" ||
  fail "the release's hack/images.sh does not name images docker.io/library/<name>:dev; teach this script its naming"
WEFT_CACHE="$WORK/cache" WEFT_CLUSTER_DIR="$CLUSTER_DIR" "$OLD/hack/images.sh" weft-controller weft-proxy weft-init

step "cert-manager (config/cert-manager: a dependency, not part of the upgrade)"
kubectl apply --server-side --force-conflicts -k config/cert-manager >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
for d in $(kubectl get -k config/cert-manager -o jsonpath='{range .items[?(@.kind=="Deployment")]}{.metadata.namespace}/{.metadata.name}{" "}{end}'); do
  kubectl -n "${d%%/*}" rollout status "deploy/${d#*/}" --timeout=180s
done

step "Installing $FROM: its config/default (controller image :$OLD_TAG) and its Mesh (proxy images :$OLD_TAG)"
kubectl kustomize "$OLD/config/default" | sed "s#image: weft-controller:dev#image: weft-controller:$OLD_TAG#" |
  kubectl apply --server-side --force-conflicts -f - >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl -n weft-system rollout status deploy/weft-controller --timeout=180s
kubectl apply -f "$OLD/config/samples/mesh.yaml" >/dev/null
kubectl patch mesh default --type merge -p "{\"spec\":{\"proxy\":{\"image\":\"weft-proxy:$OLD_TAG\",\"initImage\":\"weft-init:$OLD_TAG\"}}}" >/dev/null
kubectl wait --for=condition=Ready mesh/default --timeout=120s
"$WORK/weft-old" check --wait 120s

step "The demo (config/demo) with its load at $RPS requests/s"
kubectl kustomize config/demo | sed "s/--rps=20\b/--rps=$RPS/; s/--failure-rate=0.05\b/--failure-rate=0/" | kubectl apply -f - >/dev/null
kubectl -n weft-demo get deploy backend-v2 -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q -- '--failure-rate=0"' ||
  fail "could not turn off the demo canary's deliberate failures (config/demo/backend.yaml changed?)"
DEMO_SERVERS=(web grpc backend-v1 backend-v2)
if [ "$PRESTOP" = 1 ]; then
  echo "    the servers' preStop hook for the upgrade from $FROM: sleep 5s before the application stops"
  for d in "${DEMO_SERVERS[@]}"; do
    kubectl -n weft-demo patch deploy "$d" --type=json \
      -p '[{"op":"add","path":"/spec/template/spec/containers/0/lifecycle","value":{"preStop":{"sleep":{"seconds":5}}}}]' >/dev/null
  done
fi
for d in "${DEMO_SERVERS[@]}" load; do
  kubectl -n weft-demo rollout status "deploy/$d" --timeout=180s
done

# proxy_images DEPLOY: the weft-proxy images of the deployment's pods that are not going away.
proxy_images() {
  local sel
  sel="$(kubectl -n weft-demo get deploy "$1" -o json | jq -r '.spec.selector.matchLabels | to_entries | map("\(.key)=\(.value)") | join(",")')"
  kubectl -n weft-demo get pods -l "$sel" -o json |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null)
      | (.spec.initContainers // [])[] | select(.name == "weft-proxy") | .image] | unique | join(",")'
}
expect_proxy() { # DEPLOY IMAGE
  local got; got="$(proxy_images "$1")"
  [ "$got" = "$2" ] || fail "deploy/$1 runs proxy $got, want $2"
  echo "    deploy/$1: proxy $got"
}
for d in "${DEMO_SERVERS[@]}" load; do expect_proxy "$d" "weft-proxy:$OLD_TAG"; done

load_pod() {
  kubectl -n weft-demo get pods -l app=load -o json |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null and .status.phase == "Running")][0].metadata.name'
}
stats() { kubectl get --raw "/api/v1/namespaces/weft-demo/pods/$1:9102/proxy/stats"; }

# phase NAME ACTION...: the load's counts before the action and SETTLE seconds after it;
# any failed request in between fails the phase.
phase() {
  local name="$1"; shift
  local pod s0 s1 req fail0 start
  pod="$(load_pod)"
  s0="$(stats "$pod")"
  start=$(date +%s)
  step "Phase $name (load pod $pod)"
  "$@"
  sleep "$SETTLE"
  s1="$(stats "$pod")"
  req=$(( $(jq .requests <<<"$s1") - $(jq .requests <<<"$s0") ))
  fail0=$(( $(jq .failures <<<"$s1") - $(jq .failures <<<"$s0") ))
  REPORT+=("$(printf '%-58s %4s failed / %6s requests  (%3ss)%s' "$name" "$fail0" "$req" "$(( $(date +%s) - start ))" \
    "$([ "$fail0" = 0 ] || jq -rn --argjson a "$s0" --argjson b "$s1" \
      '"  statuses \($b.byStatus | with_entries(.value -= ($a.byStatus[.key] // 0)) | with_entries(select(.value > 0))), last: \($b.lastError)"')")")
  printf '    %s\n' "${REPORT[-1]}"
  FAILED_TOTAL=$(( FAILED_TOTAL + fail0 ))
  [ "$req" -gt 0 ] || fail "phase $name: no request completed"
}

roll() { # DEPLOY...: kubectl rollout restart, one after the other, waiting for each
  local d
  for d in "$@"; do
    kubectl -n weft-demo rollout restart "deploy/$d" >/dev/null
    kubectl -n weft-demo rollout status "deploy/$d" --timeout=180s >/dev/null
  done
}

# The phases start once the load runs clean: its first requests may precede discovery.
for _ in $(seq 60); do
  s="$(stats "$(load_pod)")"
  a="$(jq .failures <<<"$s")"; sleep 2
  [ "$(jq .failures <<<"$(stats "$(load_pod)")")" = "$a" ] && [ "$(jq .requests <<<"$s")" -gt 0 ] && break
done
phase "1 $FROM everywhere (steady state)" true

new_proxy_old_control_plane() {
  # The Mesh names the proxy image; the old injector gives it to the next pods.
  kubectl patch mesh default --type merge -p '{"spec":{"proxy":{"image":"weft-proxy:dev","initImage":"weft-init:dev"}}}' >/dev/null
  roll backend-v1
  expect_proxy backend-v1 weft-proxy:dev
}
phase "2 new proxy (backend-v1) with the $FROM control plane" new_proxy_old_control_plane

upgrade_control_plane() {
  kubectl apply --server-side --force-conflicts -k config/default >/dev/null
  kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
  kubectl -n weft-system rollout status deploy/weft-controller --timeout=300s
  bin/weft check --wait 120s >/dev/null || { bin/weft check || true; fail "weft check failed after the control plane upgrade"; }
}
phase "3 control plane upgraded, $FROM proxies" upgrade_control_plane

n=0
for d in "${DEMO_SERVERS[@]}"; do
  phase "4$(printf "\\x$(printf %x $((97 + n)))") $d rolled to the new proxy ($FROM pods go)" roll "$d"
  expect_proxy "$d" weft-proxy:dev
  n=$((n + 1))
done

roll load
expect_proxy load weft-proxy:dev
phase "5 the load client rolled: this tree everywhere" true
remove_prestop() {
  local d
  for d in "${DEMO_SERVERS[@]}"; do
    kubectl -n weft-demo patch deploy "$d" --type=json -p '[{"op":"remove","path":"/spec/template/spec/containers/0/lifecycle"}]' >/dev/null
    kubectl -n weft-demo rollout status "deploy/$d" --timeout=180s >/dev/null
  done
}
[ "$PRESTOP" = 1 ] && phase "6 the upgrade's preStop hook removed (servers roll)" remove_prestop
phase "7 rolling restart of every server, no preStop, this tree everywhere" roll "${DEMO_SERVERS[@]}"
bin/weft check --wait 60s >/dev/null || { bin/weft check || true; fail "weft check failed at the end"; }

[ "$FAILED_TOTAL" = 0 ] || fail "$FAILED_TOTAL requests failed during the upgrade"
