#!/usr/bin/env bash
# Runs every fuzz target of the proxy (detection, the static config parser, the router) for a short, fixed time each and exits non-zero
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
)
failed=0
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "fuzz: $name in $pkg for ${secs}s"
  if ! go test "$pkg" -run "^${name}\$" -fuzz "^${name}\$" -fuzztime "${secs}s" -fuzzminimizetime 50x -parallel 2; then
    echo "fuzz: $name FOUND A FAILURE (input saved under $pkg/testdata/fuzz/$name/)" >&2
    failed=1
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target found a failure" ; exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
