#!/usr/bin/env bash
# Measures the Weft proxy pair against direct and HAProxy, nginx and Caddy pairs on
# loopback, every proxy with the same thread count (one per core; --proxy-threads N),
# and writes bench/results/proxy.json with Weft's ratios to each peer.
# Prerequisites: Debian's haproxy and nginx (apt-get install -y haproxy nginx; as root
# the script installs what is missing), and Caddy, which `make bench-proxy` builds from
# the Go module proxy into ./bin (CADDY=path to use another build).
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

missing=()
for tool in haproxy nginx; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
	if [[ "$(id -u)" != 0 ]]; then
		echo "bench-proxy: ${missing[*]} not found; install with: apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	# Debian's nginx package may start its own service on port 80; the benchmark runs
	# its own nginx processes on the ports below and never touches it.
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# make bench-proxy passes CADDY; run directly, the script builds the pinned one.
caddy="${CADDY:-}"
if [[ -z "$caddy" ]]; then
	make -s caddy
	caddy="$(ls -t "$bin"/caddy-v* | head -n1)"
fi

# The loopback ports the setups use must be free, or the numbers would be someone
# else's.
for port in 18080 14140 14143 14191 24140 24143 24191 15140 15143 15191 25140 25143 25191 \
	16140 16143 16240 16243 16340 16343 17140 17143 17190 17191 27140 27143 27190 27191 \
	19140 19143 19191 29140 29143 29191 12140 12143 12190 12191 22140 22143 22190 22191 16417; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "bench-proxy: 127.0.0.1:$port is already in use" >&2
		exit 1
	fi
done

args=(--out bench/results/proxy.json --nginx "$(command -v nginx)" --caddy "$caddy")
if [[ "$(id -u)" == 0 && "${NETNS:-1}" == 1 ]] && command -v iptables >/dev/null; then
	go build -o "$bin/weft-init" ./cmd/weft-init
	args+=(--netns --weft-init "$bin/weft-init")
fi
go build -o "$bin/bench-proxy" ./test/bench/proxy
if [[ "${PROFILE:-0}" == 1 ]]; then
	CGO_ENABLED=0 go build -trimpath -o "$bin/weftprof" ./test/bench/weftprof
	rm -rf bench/results/pprof && mkdir -p bench/results/pprof
	"$bin/bench-proxy" --weft-proxy "$bin/weftprof" --profile-dir bench/results/pprof "${args[@]}" "$@"
	for side in client server; do
		echo "== CPU profile of the $side-side weft-proxy (bench/results/pprof/weft-$side.pprof)"
		go tool pprof -top -nodecount=25 "$bin/weftprof" "bench/results/pprof/weft-$side.pprof" 2>/dev/null | head -32
	done
	exit 0
fi
# Built as the image is (hack/images.sh): static and stripped. A default build links
# the C library for the resolver and measured 1.5 MB more peak RSS than what ships.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/weft-proxy" ./cmd/weft-proxy
exec "$bin/bench-proxy" --weft-proxy "$bin/weft-proxy" "${args[@]}" "$@"
