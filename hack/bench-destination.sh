#!/usr/bin/env bash
# Measures the destination service at issue 5's scale (1,000 Services, 10,000
# endpoints, 5,000 subscribed streams) against a real API server and writes
# bench/results/destination.json. The service runs in a child process so that its RSS
# and CPU are measured alone; see test/bench/destination. Extra arguments go to the
# driver, e.g. --changes 100 or --subscriptions 1000.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="${LOCALBIN:-$root/bin}"
mkdir -p "$bin" bench/results

if [[ -z "${KUBEBUILDER_ASSETS:-}" ]]; then
	KUBEBUILDER_ASSETS="$(hack/kube-binaries.sh | tail -1)"
	export KUBEBUILDER_ASSETS
fi
go build -o "$bin/bench-destination" ./test/bench/destination
exec "$bin/bench-destination" --out bench/results/destination.json "$@"
