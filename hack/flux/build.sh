#!/usr/bin/env bash
# Builds Flux's source-controller and kustomize-controller from the Go module proxy into
# bin/flux/ (once per version; ~4 CPU-minutes each when cold), with their CRDs in
# bin/flux/crds-<version>/, for make flux-e2e. Prints the directory.
#
# Neither module can be built with `go install module@version`: their go.mod replaces
# their own api/ submodule with a directory that the module zip does not contain. So the
# module is copied out of the module cache, that replace dropped (the api module of the
# same version comes from the proxy instead) and built in place. source-controller v1.9.6
# asks for github.com/fluxcd/pkg/artifact v0.18.3, which the module proxy here refuses;
# v0.18.0, the newest v0.18 it serves, builds and is API-compatible for this release.
set -euo pipefail
cd "$(dirname "$0")/../.."

FLUX_VERSION="${FLUX_VERSION:-v1.9.6}"
out="bin/flux"
mkdir -p "$out"

build() { # build NAME [go mod edit args...]
  local name="$1"; shift
  local bin="$out/$name-$FLUX_VERSION"
  [ -x "$bin" ] && return
  local mod="github.com/fluxcd/$name" work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  local dir
  dir="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$mod@$FLUX_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] || { echo "flux/build.sh: cannot download $mod@$FLUX_VERSION" >&2; return 1; }
  cp -r "$dir" "$work/src" && chmod -R u+w "$work/src"
  mkdir -p "$out/crds-$FLUX_VERSION"
  install -m 0644 "$dir"/config/crd/bases/*.yaml "$out/crds-$FLUX_VERSION/"
  (
    cd "$work/src"
    go mod edit -dropreplace="$mod/api" "$@"
    # -e: tidy also wants the test-only dependencies, some of which the proxy refuses.
    go mod tidy -e >/dev/null 2>&1 || true
    CGO_ENABLED=0 go build -trimpath -o "$work/$name" .
  )
  mv "$work/$name" "$bin"
}

build source-controller -replace=github.com/fluxcd/pkg/artifact=github.com/fluxcd/pkg/artifact@v0.18.0
build kustomize-controller
echo "$out"
