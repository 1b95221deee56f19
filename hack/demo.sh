#!/usr/bin/env bash
# make demo: the local single-node cluster demo arrives with the local-cluster issue.
# Until then this says what can be run on this machine now.
set -euo pipefail
cat <<'MSG'
The full Weft demo (a local single-node Kubernetes with a meshed sample application and
live golden metrics) arrives with the local-cluster issue.

What runs on this machine today:
  make test          API, reconcilers, webhooks, identity and the proxy against real parts
  make bench-proxy   the proxy pair against direct and HAProxy, at 1,000 and 5,000 RPS
  go run ./cmd/weft inject -f <manifest.yaml>   inject the sidecar into your manifests
MSG
