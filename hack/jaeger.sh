#!/usr/bin/env bash
# Builds Jaeger v2 (github.com/jaegertracing/jaeger/cmd/jaeger, an OpenTelemetry Collector
# distribution) of a pinned version from the Go module proxy into the per-user cache and
# prints the binary's path as the last line. A cached binary is not rebuilt. Used by
# hack/images.sh for the jaeger image that make e2e's TestTracing deploys.
#
# The module is not built with `go install module@version`: its go.mod carries replace
# directives, which `go install` refuses. A throwaway wrapper module records the binary as
# a tool (`go get -tool`), so the module's own requirements are resolved by the usual
# minimal version selection and the binary is built from the module cache.
#
# Run with no configuration, the binary is Jaeger's all-in-one: in-memory storage, the OTLP
# receivers (gRPC 4317, HTTP 4318) and the query UI and HTTP API on 16686.
set -euo pipefail

JAEGER_VERSION="${JAEGER_VERSION:-v1.75.0}"
CACHE_ROOT="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
BIN="$CACHE_ROOT/jaeger/$JAEGER_VERSION/bin/jaeger"

if [ ! -x "$BIN" ]; then
  work="$CACHE_ROOT/jaeger/wrapper-$JAEGER_VERSION"
  mkdir -p "$work" "$(dirname "$BIN")"
  printf 'module weft.local/jaeger-wrapper\n\ngo 1.26.0\n' >"$work/go.mod"
  start=$(date +%s)
  echo "jaeger: building $JAEGER_VERSION (cold: many minutes on 2 cores)" >&2
  (cd "$work" && GOFLAGS=-mod=mod go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" >&2)
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger && mv "$BIN.tmp" "$BIN")
  echo "jaeger: built in $(( $(date +%s) - start ))s" >&2
fi
echo "$BIN"
