#!/usr/bin/env bash
# make conformance: the Gateway API conformance suite's mesh tests on the local cluster.
#
#   cluster up (hack/cluster/up.sh: reuses a healthy one) -> Weft's images (hack/images.sh)
#   -> the suite's echo image, built from Istio's echo in the Go module proxy
#   -> install as make e2e does (hack/demo/install.sh)
#   -> go test ./test/conformance (the suite's mesh tests, injection on by namespace label)
#   -> tear down (hack/cluster/down.sh) -> the report and the result line
#
#   CONFORMANCE_KEEP=1       leave the cluster up afterwards
#   CONFORMANCE_REPORTS=dir  where reports go (default conformance/reports): the report
#                            is <dir>/<suite version>/weftmesh-weft/<channel>-<weft
#                            version>-default-report.yaml, upstream's layout and naming
#   CONFORMANCE_TIMEOUT=40m  go test's timeout
#   CONFORMANCE_CHANNEL=standard|experimental
#                            the Gateway API CRDs the run installs (default standard,
#                            what config/default ships); experimental replaces them
#                            with config/crd/gateway-api-experimental after the install,
#                            as a user who opts in does, and the report is named after
#                            the channel the suite finds
#
# Prints the time of each part, then `conformance: N passed, M failed, K skipped` as its
# last line. See conformance/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_TAG=conformance
source hack/cluster/lib.sh

# Istio's echo (server and client) at the version Weft's report was made with; the
# suite's manifests name an image built from it (registry.k8s.io/gateway-api/echo-advanced
# is gcr.io/istio-release/app under another name). A pseudo-version of istio.io/istio:
# Istio tags its releases as modules of their own, not of istio.io/istio.
ISTIO_VERSION="v0.0.0-20260827124520-eed52ebb66ad"
# The uid Istio's app image runs as (its Dockerfile.app); not Weft's proxy uid.
ECHO_UID=1338

KEEP="${CONFORMANCE_KEEP:-0}"
CHANNEL="${CONFORMANCE_CHANNEL:-standard}"
case "$CHANNEL" in
  standard) CHANNEL_CRDS="" ;;
  experimental) CHANNEL_CRDS=config/crd/gateway-api-experimental ;;
  *) printf 'conformance: CONFORMANCE_CHANNEL=%s: use standard or experimental\n' "$CHANNEL" >&2; exit 2 ;;
esac
ECHO_DIR="$IMAGES_DIR/echo"
LOG_DIR="$CACHE_ROOT/conformance"
mkdir -p "$LOG_DIR"
RESULT=""
declare -a PARTS=()
T0=$(date +%s)
CURRENT="" part_start=$T0
begin() { CURRENT="$1"; part_start=$(date +%s); }
end() {
  PARTS+=("$(printf '%-44s %5ss' "$CURRENT${1:+ ($1)}" "$(( $(date +%s) - part_start ))")")
  CURRENT=""
}
# cannot REASON: the suite could not run at all; says so plainly and stops.
cannot() {
  RESULT="conformance: NOT RUN: $*"
  exit 1
}
summary() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$CURRENT" ] && end FAILED
  if [ "$KEEP" = 1 ]; then
    printf '\nconformance: the cluster is left up (CONFORMANCE_KEEP=1): eval "$(hack/cluster/env.sh)"\n'
  elif [ "${CLUSTER_STARTED:-0}" = 1 ]; then
    printf '\n==> Tearing the cluster down (hack/cluster/down.sh checks nothing is left)\n'
    begin "teardown + leftover check"
    if hack/cluster/down.sh; then end; else rc=1; end "FAILED: something is left"; fi
  fi
  printf '\nconformance: time per part\n'
  printf '  %s\n' "${PARTS[@]}"
  printf '  %-44s %5ss\n' total "$(( $(date +%s) - T0 ))"
  [ -n "${REPORT:-}" ] && [ -s "$REPORT" ] && printf '\nconformance: report %s\n' "$REPORT"
  [ -n "$RESULT" ] || RESULT="conformance: NOT RUN: failed before the suite started (see above)"
  echo "$RESULT"
  exit "$rc"
}
trap summary EXIT
trap 'exit 130' INT TERM

# The suite, its version and the echo image it expects all come from the pinned module,
# so bumping it in test/conformance/go.mod moves everything together.
begin "suite module"
SUITE_DIR="$(cd test/conformance && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api/conformance)" ||
  cannot "the suite's module (test/conformance/go.mod) could not be downloaded from the Go module proxy"
SUITE_VERSION="$(cd test/conformance && go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api/conformance)"
mapfile -t ECHO_IMAGES < <(sed -n 's/^ *image: *\(.*echo-advanced.*\)$/\1/p' "$SUITE_DIR/mesh/manifests.yaml" | sort -u)
[ ${#ECHO_IMAGES[@]} -ge 1 ] || cannot "no echo-advanced image in $SUITE_DIR/mesh/manifests.yaml (the suite changed)"
# A snapshot, as upstream's rules ask of `version`: the commit (with -dirty if the tree
# has changes), never a branch name.
VERSION="$(git describe --tags --always --dirty 2>/dev/null || echo unknown)"
REPORTS="${CONFORMANCE_REPORTS:-$PWD/conformance/reports}/$SUITE_VERSION/weftmesh-weft"
REPORT_RAW="$LOG_DIR/report.yaml"
rm -f "$REPORT_RAW"
end

begin "build weft CLI"
printf '==> Building the weft CLI\n'
go build -o bin/weft ./cmd/weft
end

begin "echo binaries (istio.io/istio $ISTIO_VERSION)"
printf '\n==> Istio echo server and client from the Go module proxy (cached in %s)\n' "$ECHO_DIR"
# `go install pkg@version` builds with istio.io/istio's own go.mod and go.sum, so the
# echo is exactly that commit's; the binaries are kept per version.
BIN="$ECHO_DIR/$ISTIO_VERSION"
if [ ! -x "$BIN/server" ] || [ ! -x "$BIN/client" ]; then
  mkdir -p "$BIN.tmp"
  CGO_ENABLED=0 GOBIN="$BIN.tmp" go install -trimpath -ldflags "-s -w" \
    "istio.io/istio/pkg/test/echo/cmd/server@$ISTIO_VERSION" \
    "istio.io/istio/pkg/test/echo/cmd/client@$ISTIO_VERSION" ||
    cannot "building Istio's echo (istio.io/istio@$ISTIO_VERSION) from the Go module proxy failed"
  rm -rf "$BIN"; mv "$BIN.tmp" "$BIN"
fi
end

begin "cluster up"
# One cluster, several users: make e2e tears the cluster down at its end, so the two must
# never overlap. This run holds the cluster lock (lib.sh; up.sh and down.sh run from here
# inherit it) from before cluster up to after teardown, so an e2e started meanwhile waits
# in its up.sh. One already past its up.sh holds the cluster without the lock: wait for it.
e2e_on_cluster() { # an e2e.sh is running that is neither before nor in its up.sh
  local p
  for p in $(pgrep -f 'hack/e2e\.sh'); do
    pgrep -P "$p" -f 'cluster/up\.sh|go build -o bin/weft' >/dev/null || return 0
  done
  return 1
}
waited=0
while :; do
  while e2e_on_cluster; do
    [ "$waited" = 1 ] || log "make e2e is using the local cluster: waiting for it to end"
    waited=1; sleep 2
  done
  lock_cluster
  e2e_on_cluster || break
  exec 9>&-; unset WEFT_CLUSTER_LOCKED # it got there first: let it finish
done
printf '\n==> Cluster (hack/cluster/up.sh)\n'
# From here on the cluster is torn down at exit, as make e2e does, even if up.sh fails
# half-way (down.sh removes whatever was started).
CLUSTER_STARTED=1
hack/cluster/up.sh
eval "$(hack/cluster/env.sh)"
export KUBECONFIG
end

begin "Weft images"
printf '\n==> Images (hack/images.sh)\n'
hack/images.sh
end

begin "echo image"
printf '\n==> The suite'"'"'s echo image: %s\n' "${ECHO_IMAGES[*]}"
# Laid out as Istio's Dockerfile.app: server and client on PATH, the test certificate
# at /cert.crt and /cert.key (the suite's manifests pass --crt/--key), the app's uid.
ISTIO_DIR="$(go mod download -json "istio.io/istio@$ISTIO_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
[ -d "$ISTIO_DIR/tests/testdata/certs/dns" ] || cannot "istio.io/istio@$ISTIO_VERSION has no tests/testdata/certs/dns"
STAGE="$ECHO_DIR/stage-$ISTIO_VERSION"
rm -rf "$STAGE"; mkdir -p "$STAGE/usr/local/bin"
cp "$BIN/server" "$BIN/client" "$STAGE/usr/local/bin/"
install -m 0644 "$ISTIO_DIR/tests/testdata/certs/dns/cert-chain.pem" "$STAGE/cert.crt"
install -m 0644 "$ISTIO_DIR/tests/testdata/certs/dns/key.pem" "$STAGE/cert.key"
OCIBUILD="$IMAGES_DIR/bin/ocibuild" # hack/images.sh built it
for img in "${ECHO_IMAGES[@]}"; do
  tar="$ECHO_DIR/$(echo "$img" | tr -c 'A-Za-z0-9.-' _).tar"
  digest="$("$OCIBUILD" -name "$img" -o "$tar" -entrypoint /usr/local/bin/server -user "$ECHO_UID:$ECHO_UID" \
    -env PATH=/usr/local/bin:/usr/bin:/bin -add "$STAGE:/")"
  have="$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls "name==$img" 2>/dev/null | awk 'NR>1 {print $3}')"
  if [ "$have" != "$digest" ]; then
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$tar" >/dev/null
    log "imported $img ($digest)"
  fi
done
rm -rf "$STAGE" # the tarball has it; the binaries stay cached in $BIN
end

begin "install (cert-manager, Weft, Mesh, demo)"
WEFT="$PWD/bin/weft" hack/demo/install.sh
end

if [ -n "$CHANNEL_CRDS" ]; then
  begin "Gateway API $CHANNEL CRDs"
  # Over the standard ones config/default installed: the same kinds at the same
  # version, with the experimental fields (HTTPRoute retry, sessionPersistence, the
  # ExternalAuth filter, ...) in their schemas. Weft's controller reads them with the same Go types, so it needs no
  # restart; the suite reads the channel from the CRDs' annotation.
  printf '\n==> Gateway API %s channel CRDs (%s)\n' "$CHANNEL" "$CHANNEL_CRDS"
  kubectl apply --server-side --force-conflicts -k "$CHANNEL_CRDS" >/dev/null
  kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
  got="$(kubectl get crd httproutes.gateway.networking.k8s.io -o jsonpath='{.metadata.annotations.gateway\.networking\.k8s\.io/channel}')"
  [ "$got" = "$CHANNEL" ] || cannot "the HTTPRoute CRD says channel '$got' after installing $CHANNEL_CRDS"
  end
fi

begin "suite ($SUITE_VERSION mesh tests, $CHANNEL channel)"
printf '\n==> Gateway API conformance %s, mesh tests, %s channel (go test ./test/conformance)\n' "$SUITE_VERSION" "$CHANNEL"
out="$LOG_DIR/run.log"
set +e
(cd test/conformance &&
  WEFT_CONFORMANCE_REPORT="$REPORT_RAW" WEFT_CONFORMANCE_VERSION="$VERSION" \
    go test . -run '^TestMeshConformance$' -count=1 -v -timeout "${CONFORMANCE_TIMEOUT:-40m}") 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
# Named by the channel the suite found installed (the CRDs' annotation), as upstream does.
if [ -s "$REPORT_RAW" ]; then
  channel="$(sed -n 's/^gatewayAPIChannel: *//p' "$REPORT_RAW")"
  # The suite read the channel from the CRDs; a report that names another than the one
  # asked for would be filed under the wrong name.
  if [ "$channel" != "$CHANNEL" ]; then
    printf 'conformance: the suite found the %s channel installed, not %s\n' "${channel:-UNDEFINED}" "$CHANNEL"
    rc=1
  fi
  mkdir -p "$REPORTS"
  REPORT="$REPORTS/${channel:-UNDEFINED}-$VERSION-default-report.yaml"
  cp "$REPORT_RAW" "$REPORT"
fi
RESULT="$(grep -E '^conformance: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$out" | tail -1)"
[ -n "$RESULT" ] || RESULT="conformance: NOT RUN: the suite gave no result (see $out)"
# Weft's own mesh tests (test/conformance/weft.go, not part of the report): their line
# goes above the suite's, which stays the last line.
weft="$(grep -E '^conformance \(Weft mesh tests\): ' "$out" | tail -1)"
[ -n "$weft" ] || weft="conformance (Weft mesh tests): NOT RUN (see $out)"
RESULT="$weft"$'\n'"$RESULT"
if [ "$rc" != 0 ]; then
  end FAILED
  printf '\nconformance: failed mesh tests (full log: %s):\n' "$out"
  grep -E '^\s+--- FAIL: TestMeshConformance/' "$out" | sed 's/^ */  /' || true
  exit 1
fi
end
