#!/usr/bin/env bash
# make demo: runs Weft's control plane on this machine with a real kube-apiserver, the
# real cert-manager controllers and two meshed proxies, and shows live golden metrics.
# The local single-node cluster version arrives with the local-cluster issue.
# DEMO_DURATION=30s stops the metrics view by itself (default: until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v kubectl >/dev/null || echo "demo: kubectl not found; status tables will be skipped (apt-get install kubernetes-client)" >&2
exec go run ./hack/demo
