#!/usr/bin/env bash
# Measures the Weft proxy pair against direct and an HAProxy pair on loopback and
# writes bench/results/proxy.json. Needs Debian's haproxy (apt-get install haproxy).
# As root it also measures the pod path in two network namespaces (weft-init's
# iptables rules, proxies as UID 2102); NETNS=0 turns that off.
# Extra arguments go to the driver (test/bench/proxy), e.g. --duration 5s.
# PROFILE=1 also writes CPU profiles of the two loopback Weft proxies to
# bench/results/pprof/ and prints their top functions.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="${LOCALBIN:-$root/bin}"
mkdir -p "$bin" bench/results

if ! command -v haproxy >/dev/null; then
	echo "bench-proxy: haproxy not found; install it with: apt-get install -y haproxy" >&2
	exit 1
fi

# The loopback ports the setups use must be free, or the numbers would be someone
# else's.
for port in 18080 14140 14143 14191 24140 24143 24191 15140 15143 15191 25140 25143 25191 34140 34143; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "bench-proxy: 127.0.0.1:$port is already in use" >&2
		exit 1
	fi
done

args=(--out bench/results/proxy.json)
if [[ "$(id -u)" == 0 && "${NETNS:-1}" == 1 ]] && command -v iptables >/dev/null; then
	go build -o "$bin/weft-init" ./cmd/weft-init
	args+=(--netns --weft-init "$bin/weft-init")
fi
go build -o "$bin/bench-proxy" ./test/bench/proxy
if [[ "${PROFILE:-0}" == 1 ]]; then
	go build -o "$bin/weftprof" ./test/bench/weftprof
	rm -rf bench/results/pprof && mkdir -p bench/results/pprof
	"$bin/bench-proxy" --weft-proxy "$bin/weftprof" --profile-dir bench/results/pprof "${args[@]}" "$@"
	for side in client server; do
		echo "== CPU profile of the $side-side weft-proxy (bench/results/pprof/weft-$side.pprof)"
		go tool pprof -top -nodecount=25 "$bin/weftprof" "bench/results/pprof/weft-$side.pprof" 2>/dev/null | head -32
	done
	exit 0
fi
go build -o "$bin/weft-proxy" ./cmd/weft-proxy
exec "$bin/bench-proxy" --weft-proxy "$bin/weft-proxy" "${args[@]}" "$@"
