#!/usr/bin/env bash
# Builds CoreDNS of a pinned version from the Go module proxy into the per-user cache and
# prints the binary's path as the last line. A cached binary is not rebuilt.
#
# CoreDNS' own main package links every plugin (cloud DNS providers, etcd, dnstap, ...),
# which costs hundreds of MB of module downloads the local cluster never uses. A throwaway
# wrapper module instead links coremain with only the plugins the cluster's Corefile
# names; the server's directive order is compiled into coremain, so plugins that are not
# linked are simply unavailable.
set -euo pipefail

COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
CACHE_ROOT="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
BIN="$CACHE_ROOT/coredns/$COREDNS_VERSION/bin/coredns"

if [ ! -x "$BIN" ]; then
  work="$CACHE_ROOT/coredns/wrapper-$COREDNS_VERSION"
  mkdir -p "$work" "$(dirname "$BIN")"
  printf 'module weft.local/coredns-wrapper\n\ngo 1.26.0\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" >"$work/go.mod"
  cat >"$work/main.go" <<'GO'
// Command coredns is CoreDNS with the plugins a single-node development cluster needs.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/whoami"
)

func main() { coremain.Run() }
GO
  echo "coredns: building $COREDNS_VERSION (cold: a few minutes on 2 cores)" >&2
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >/dev/null)
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" . && mv "$BIN.tmp" "$BIN")
fi
echo "$BIN"
