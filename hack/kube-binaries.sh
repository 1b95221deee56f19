#!/usr/bin/env bash
# Builds Kubernetes binaries of a pinned version from the Go module proxy into a per-user
# cache outside the repository, and prints the directory that holds them as the last line.
#
#   hack/kube-binaries.sh                       # kube-apiserver + etcd (what envtest needs)
#   hack/kube-binaries.sh kubelet kube-proxy    # any of the components below, plus etcd
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the staging modules
# (k8s.io/api, k8s.io/apiserver, ...) with paths inside its own tree. A throwaway wrapper
# module requires k8s.io/kubernetes and replaces every staging module with its published
# v0.Y.Z instead, which the module proxy serves. etcd is built the same way from its server
# module. A binary that is already in the cache is not rebuilt, so a warm run is a no-op.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
BIN_DIR="$CACHE_ROOT/kube/$KUBE_VERSION-etcd-$ETCD_VERSION/bin"

known="kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy"
components=("$@")
[ ${#components[@]} -eq 0 ] && components=(kube-apiserver)
for c in "${components[@]}"; do
  case " $known " in *" $c "*) ;; *) echo "unknown component $c (known: $known)" >&2; exit 2 ;; esac
done

log() { echo "kube-binaries: $*" >&2; }
mkdir -p "$BIN_DIR"

missing=()
for c in "${components[@]}"; do [ -x "$BIN_DIR/$c" ] || missing+=("$c"); done

if [ ${#missing[@]} -gt 0 ]; then
  work="$CACHE_ROOT/kube/wrapper-$KUBE_VERSION"
  mkdir -p "$work"
  kube_gomod="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  staging_version="v0.${KUBE_VERSION#v1.}"
  {
    echo "module weft.local/kube-wrapper"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    # Every "k8s.io/x => ./staging/src/k8s.io/x" in kubernetes' go.mod becomes a replace
    # with the published staging module of the same minor version.
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#replace \1 => \1 '"$staging_version"'#p' "$kube_gomod"
  } >"$work/go.mod"
  printf 'package wrapper\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n' >"$work/wrapper.go"
  pkgs=()
  for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  log "building ${missing[*]} $KUBE_VERSION (cold: several minutes on 2 cores)"
  minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true)
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/" "${pkgs[@]}")
fi

if [ ! -x "$BIN_DIR/etcd" ]; then
  work="$CACHE_ROOT/kube/wrapper-etcd-$ETCD_VERSION"
  mkdir -p "$work"
  printf 'module weft.local/etcd-wrapper\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$work/go.mod"
  printf 'package wrapper\n\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\n' >"$work/wrapper.go"
  log "building etcd $ETCD_VERSION"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true)
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3)
fi

# envtest looks for kubectl in the same directory; Debian's client is enough when present.
if [ ! -e "$BIN_DIR/kubectl" ] && command -v kubectl >/dev/null; then ln -sf "$(command -v kubectl)" "$BIN_DIR/kubectl"; fi

echo "$BIN_DIR"
