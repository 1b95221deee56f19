#!/usr/bin/env bash
# Builds Weft's container images and the local cluster's base images as OCI image-layout
# tarballs, without a container engine, and imports them into the local cluster
# (make images).
#
#   hack/images.sh                       build all, import into the running cluster
#   hack/images.sh weft-proxy weft-init  only these
#   hack/images.sh --no-import pause     build only (hack/cluster/up.sh does this)
#
# Each image is one layer with a static binary (CGO_ENABLED=0), built by
# hack/images/ocibuild; weft-init also carries Debian's iptables (nft variant) and the
# libraries it loads, copied from this machine. Tarballs live in ~/.cache/weft/images
# (hack/cluster/up.sh re-imports them after a teardown); an image whose inputs did not
# change is not rewritten, and one whose digest is already in containerd is not
# re-imported. Names: docker.io/library/<name>:dev, which is what "<name>:dev" in a pod
# spec means.
set -euo pipefail
LOG_TAG=images
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"
cd "$REPO_ROOT"

IMPORT=true
want=()
for a in "$@"; do
  case "$a" in
    --no-import) IMPORT=false ;;
    -*) echo "usage: $0 [--no-import] [image...]" >&2; exit 2 ;;
    *) want+=("$a") ;;
  esac
done

all=(pause coredns weft-controller weft-proxy weft-init weft-cni weft-cert-manager weft-dashboard)
[ -d cmd/weft-demo ] && all+=(weft-demo)
# Built only when named: jaeger (hack/jaeger.sh; many minutes when cold), which only
# make e2e's TestTracing deploys.
known=("${all[@]}" jaeger)
[ ${#want[@]} -eq 0 ] && want=("${all[@]}")
for w in "${want[@]}"; do
  case " ${known[*]} " in *" $w "*) ;; *) echo "unknown image $w (known: ${known[*]})" >&2; exit 2 ;; esac
done

BIN="$IMAGES_DIR/bin"
mkdir -p "$BIN"
T0="$(now_ms)"

# Go binaries: one `go build` for all of them, so the shared packages compile once. The
# build cache makes an unchanged rebuild a matter of seconds.
pkgs=()
for w in "${want[@]}"; do
  case "$w" in
    pause) pkgs+=(./hack/images/pause) ;;
    coredns|jaeger) ;;
    *) pkgs+=("./cmd/$w") ;;
  esac
done
pkgs+=(./hack/images/ocibuild)
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/" "${pkgs[@]}"
for w in "${want[@]}"; do
  case "$w" in
    coredns) cp -p "$("$HACK_CLUSTER/coredns.sh" | tail -1)" "$BIN/coredns" ;;
    jaeger) cp -p "$("$REPO_ROOT/hack/jaeger.sh" | tail -1)" "$BIN/jaeger" ;;
  esac
done
log "binaries built ($(( $(now_ms) - T0 )) ms)"

# stage_iptables DIR puts iptables/ip6tables (and -save/-restore) with the shared
# libraries and xtables extensions they load into DIR, laid out like Debian's merged /usr.
stage_iptables() {
  local dir="$1" multi lib extdir f
  rm -rf "$dir"; mkdir -p "$dir/usr/sbin" "$dir/usr/lib64" "$dir/etc" "$dir/run"
  multi="$(readlink -f /usr/sbin/xtables-nft-multi)"
  [ -x "$multi" ] || die "xtables-nft-multi not found (apt-get install iptables)"
  cp "$multi" "$dir/usr/sbin/xtables-nft-multi"
  for f in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -s xtables-nft-multi "$dir/usr/sbin/$f"
  done
  extdir=/usr/lib/x86_64-linux-gnu/xtables
  mkdir -p "$dir$extdir"
  cp "$extdir"/*.so "$dir$extdir/"
  # Every library the binary or an extension links, at the path the loader looks in.
  for lib in $( { ldd "$multi"; for f in "$extdir"/*.so; do ldd "$f"; done; } |
      awk '/=>/ && $3 ~ /^\// {print $3}' | sort -u); do
    mkdir -p "$dir/usr/lib/x86_64-linux-gnu"
    cp "$(readlink -f "$lib")" "$dir/usr/lib/x86_64-linux-gnu/$(basename "$lib")"
  done
  cp "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$dir/usr/lib64/ld-linux-x86-64.so.2"
  ln -s usr/lib "$dir/lib"
  ln -s usr/lib64 "$dir/lib64"
  ln -s usr/sbin "$dir/sbin"
  [ -f /etc/protocols ] && cp /etc/protocols "$dir/etc/protocols"
  return 0
}

# build NAME ARGS...: write $IMAGES_DIR/NAME.tar unless its inputs are unchanged.
build() {
  local name="$1"; shift
  local key tar="$IMAGES_DIR/$name.tar"
  key="$( { sha256sum "$BIN/ocibuild" | cut -d' ' -f1; printf '%s\n' "$@";
    for a in "$@"; do
      case "$a" in
        -add=*) src="${a#-add=}"; src="${src%%:*}"; find "$src" -type f -print0 | sort -z | xargs -0 sha256sum ;;
      esac
    done; } | sha256sum | cut -d' ' -f1)"
  if [ -s "$tar" ] && [ "$(cat "$IMAGES_DIR/$name.key" 2>/dev/null)" = "$key" ]; then
    return 0
  fi
  "$BIN/ocibuild" -name "docker.io/library/$name:dev" -o "$tar" "$@" >"$IMAGES_DIR/$name.digest"
  echo "$key" >"$IMAGES_DIR/$name.key"
  log "wrote $tar ($(du -h "$tar" | cut -f1), $(cat "$IMAGES_DIR/$name.digest"))"
}

for w in "${want[@]}"; do
  case "$w" in
    pause) build pause -entrypoint=/pause -user=65535:65535 -add="$BIN/pause:/pause" ;;
    coredns) build coredns -entrypoint=/coredns -user=0:0 -add="$BIN/coredns:/coredns" ;;
    weft-controller) build weft-controller -entrypoint=/weft-controller -user=65532:65532 -add="$BIN/weft-controller:/weft-controller" ;;
    weft-proxy) build weft-proxy -entrypoint=/weft-proxy -user=2102:2102 -add="$BIN/weft-proxy:/weft-proxy" ;;
    weft-init)
      # Staged once per installed iptables/libc version (ldd over every extension is slow).
      stage="$IMAGES_DIR/stage/iptables-$(dpkg-query -W -f='${Version}' iptables libc6 2>/dev/null | tr -c 'A-Za-z0-9.+~-' _)"
      [ -d "$stage" ] || { stage_iptables "$stage.tmp" && mv "$stage.tmp" "$stage"; }
      build weft-init -entrypoint=/weft-init -user=0:0 -add="$BIN/weft-init:/weft-init" -add="$stage:/"
      ;;
    # weft-cni's installer runs as root (it writes the host's CNI directories); the
    # plugin it copies out runs the node's own iptables, so the image needs only itself.
    weft-cni) build weft-cni -entrypoint=/weft-cni -user=0:0 -add="$BIN/weft-cni:/weft-cni" ;;
    weft-cert-manager) build weft-cert-manager -entrypoint=/weft-cert-manager -user=65532:65532 -add="$BIN/weft-cert-manager:/weft-cert-manager" ;;
    weft-dashboard) build weft-dashboard -entrypoint=/weft-dashboard -user=65532:65532 -add="$BIN/weft-dashboard:/weft-dashboard" ;;
    weft-demo) build weft-demo -entrypoint=/weft-demo -user=65532:65532 -add="$BIN/weft-demo:/weft-demo" ;;
    # Jaeger v2 all-in-one: with no --config it runs its built-in configuration
    # (in-memory storage, OTLP on 4317/4318, query on 16686).
    jaeger) build jaeger -entrypoint=/jaeger -user=10001:10001 -add="$BIN/jaeger:/jaeger" ;;
  esac
done
log "images written ($(( $(now_ms) - T0 )) ms)"

$IMPORT || exit 0
if ! ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
  log "the local cluster is not running: images built, not imported (hack/cluster/up.sh imports them)"
  exit 0
fi
for w in "${want[@]}"; do
  ref="docker.io/library/$w:dev"
  have="$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls "name==$ref" 2>/dev/null | awk 'NR>1 {print $3}')"
  if [ "$have" = "$(cat "$IMAGES_DIR/$w.digest")" ]; then continue; fi
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$IMAGES_DIR/$w.tar" >/dev/null
  log "imported $ref"
done
log "images ready in the cluster ($(( $(now_ms) - T0 )) ms)"
