#!/usr/bin/env bash
# Runs every fuzz target of the proxy (detection, the static config parser, the router, the
# weft.h2 server's and client's frame handling, the HTTP/1.1 server's read and hand-over
# path, the weft.tcp header, the discovery wire and delta decoding, the Certify answer
# parser, the shared gRPC message reader and grpc-timeout parser, the Service-name
# parser the destination service applies to proxies' authorities, the trace-context
# headers traceparent, b3 and X-B3-*) for a short, fixed time each and exits non-zero
# on any finding (go test -fuzz fails and writes the input under testdata/fuzz/).
# Minimising new corpus entries is capped (-fuzzminimizetime 50x): with large seeds such as
# a TLS ClientHello it otherwise eats the whole time budget on a 2-core machine.
# Usage: hack/fuzz.sh [seconds-per-target]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-${FUZZ_SECONDS:-20}}"
targets=(
  "./proxy/detect FuzzClassify"
  "./proxy/config FuzzParse"
  "./proxy/router FuzzMatchAndFilters"
  "./proxy/router FuzzCORS"
  "./proxy/internal/h2 FuzzH2Server"
  "./proxy/internal/h2 FuzzH2Client"
  "./proxy/internal/h1 FuzzH1Server"
  "./proxy/discovery FuzzRecv"
  "./proxy/discovery FuzzApplyDelta"
  "./proxy/identity FuzzParseCertifyResponse"
  "./proxy/transport FuzzReadTCPHeader"
  "./internal/grpcwire FuzzReader"
  "./internal/grpcwire FuzzParseTimeout"
  "./internal/svcname FuzzParse"
  "./proxy/tracing FuzzExtract"
)
# Go 1.26's fuzz coordinator can fail a run with a bare "context deadline exceeded" when
# -fuzztime ends while a worker is mid-input (golang/go#75804, fixed in Go 1.27), and may
# save that input. Such a run counts as a finding only if replaying the target's corpus,
# saved input included, fails as a plain test; otherwise the saved input is removed.
failed=0
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  dir="$pkg/testdata/fuzz/$name"
  before="$(ls "$dir" 2>/dev/null || true)"
  echo "fuzz: $name in $pkg for ${secs}s"
  log="$(mktemp)"
  if go test "$pkg" -run "^${name}\$" -fuzz "^${name}\$" -fuzztime "${secs}s" -fuzzminimizetime 50x -parallel 2 2>&1 | tee "$log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    rm -f "$log"
    continue
  fi
  if grep -q "^    context deadline exceeded$" "$log" && go test "$pkg" -run "^${name}\$" >/dev/null 2>&1; then
    echo "fuzz: $name: the fuzz coordinator's own deadline (golang/go#75804); the corpus replays cleanly, not a finding"
    for f in $(ls "$dir" 2>/dev/null); do
      grep -qx "$f" <<<"$before" || rm -f "$dir/$f"
    done
    rmdir "$dir" 2>/dev/null || true
  else
    echo "fuzz: $name FOUND A FAILURE (input saved under $dir/)" >&2
    failed=1
  fi
  rm -f "$log"
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target found a failure" ; exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
