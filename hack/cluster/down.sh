#!/usr/bin/env bash
# Tears the local cluster down completely (make cluster-down), then checks that nothing
# is left: no process, mount, bridge, veth, netns, nft table, KUBE-*/CNI-* iptables chain,
# kubepods cgroup or state directory. Exits non-zero naming whatever is left.
#
#   hack/cluster/down.sh           tear down, then check
#   hack/cluster/down.sh --check   only check (exit 0: nothing of the cluster is left)
#
# The build cache and the image cache (~/.cache/weft/{kube,coredns,images}) are kept;
# the last run's logs are moved to $WEFT_CLUSTER_DIR.last-logs.
#
# Only what belongs to this cluster is touched: processes are found by PID file, by
# naming the cluster directory on their command line, or by living in a kubepods cgroup;
# network namespaces by containerd's "cni-" prefix; links by the weft0 bridge. The
# kube-apiserver/etcd of envtest suites (same binaries, other directories) are left alone.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHECK_ONLY=false
case "${1:-}" in
  --check) CHECK_ONLY=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# --- what belongs to the cluster --------------------------------------------------------
# our_pids prints the PIDs of processes of this cluster: the components (their command
# lines name the cluster directory), containerd's shims (they name its socket) and every
# process in a kubepods cgroup (the containers).
our_pids() {
  local pid ancestors=" " a="$$"
  # Never ourselves or whoever runs us (a shell whose command line names the cluster dir).
  while [ -n "$a" ] && [ "$a" -gt 1 ] 2>/dev/null; do
    ancestors+="$a "
    a="$(awk '/^PPid:/ {print $2}' "/proc/$a/status" 2>/dev/null)"
  done
  {
    grep -lsF -- "$CLUSTER_DIR/" /proc/[0-9]*/cmdline
    grep -ls ':/kubepods' /proc/[0-9]*/cgroup
  } 2>/dev/null | cut -d/ -f3 | sort -un | while read -r pid; do
    # Only what still runs (the greps above matched themselves).
    case "$ancestors" in *" $pid "*) continue ;; esac
    [ "$pid" = "$BASHPID" ] && continue
    running_pid "$pid" && echo "$pid"
  done
  return 0
}

# our_mounts prints mount points of the cluster, deepest first.
our_mounts() {
  awk '{print $5}' /proc/self/mountinfo | sed 's/\\040/ /g' |
    grep -E "^($CLUSTER_DIR(/|$)|/run/netns/cni-|/var/run/netns/cni-|/run/containerd(/|$)|/var/lib/kubelet(/|$))" |
    awk '{print length($0) " " $0}' | sort -rn | cut -d' ' -f2-
}

our_netns() { ip netns list 2>/dev/null | awk '{print $1}' | grep '^cni-' || true; }
our_veths() { ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 || true; }
our_nft_tables() {
  nft list tables 2>/dev/null | grep -E "^table (ip kube-proxy|ip6 kube-proxy|inet $NFT_TABLE)$" || true
}
# our_ipt_chains prints "BINARY TABLE CHAIN" for every KUBE-* chain (kubelet's canaries and
# firewall, kube-proxy's leftovers from other modes) and CNI-* chain (the portmap
# plugin's, for pods with a hostPort).
our_ipt_chains() {
  local bin t
  for bin in iptables ip6tables; do
    command -v "$bin-save" >/dev/null || continue
    for t in filter nat mangle; do
      "$bin-save" -t "$t" 2>/dev/null | sed -nE 's/^:((KUBE|CNI)-[^ ]*) .*/\1/p' | sed "s/^/$bin $t /"
    done
  done
}
our_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] && echo "$d"
  done
  return 0
}

check() {
  local left=() x
  for x in $(our_pids); do left+=("process $x ($(tr '\0' ' ' </proc/$x/cmdline 2>/dev/null | cut -c1-100))"); done
  while IFS= read -r x; do [ -n "$x" ] && left+=("mount $x"); done < <(our_mounts)
  ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("bridge $BRIDGE")
  for x in $(our_veths); do left+=("veth $x"); done
  for x in $(our_netns); do left+=("netns $x"); done
  while IFS= read -r x; do [ -n "$x" ] && left+=("nft $x"); done < <(our_nft_tables)
  while IFS= read -r x; do [ -n "$x" ] && left+=("$x chain"); done < <(our_ipt_chains)
  for x in $(our_cgroups); do left+=("cgroup $x"); done
  for x in "$CLUSTER_DIR" /var/lib/cni /run/containerd/s "/run/containerd/runc/k8s.io"; do
    [ -e "$x" ] && left+=("directory $x")
  done
  if [ ${#left[@]} -gt 0 ]; then
    log "left behind:"
    printf '  %s\n' "${left[@]}" >&2
    return 1
  fi
  log "nothing of the cluster is left"
}

if $CHECK_ONLY; then check; exit $?; fi
lock_cluster

T0="$(now_ms)"

# stop NAME: SIGTERM, wait up to 20 s, then SIGKILL and wait for it to be gone.
stop() {
  local name="$1" pid i
  pid="$(pid_of "$name")" || return 0
  [ -n "$pid" ] && running_pid "$pid" || return 0
  # Make sure the PID still is our component, not a recycled number.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$CLUSTER_DIR" || return 0
  local t0; t0="$(now_ms)"
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 200; i++)); do running_pid "$pid" || break; sleep 0.1; done
  if running_pid "$pid"; then
    log "$name ($pid) did not stop in 20 s; killing it"
    kill -KILL "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do running_pid "$pid" || break; sleep 0.1; done
  fi
  log "stopped $name ($(( $(now_ms) - t0 )) ms)"
}

# The node agents first, so that nothing restarts containers while they are removed.
stop kube-proxy
stop kubelet
stop kube-scheduler
stop kube-controller-manager

# Containers: runc's state root is private to this cluster; delete --force kills the
# container's processes and removes its cgroups.
RUNC_ROOT="$RUN/runc/k8s.io"
if [ -d "$RUNC_ROOT" ]; then
  for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
    runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 &
  done
  wait
fi
stop containerd
stop kube-apiserver
stop etcd

# Whatever survived (shims, containers whose runc state was lost): SIGKILL, bounded wait.
for ((i = 0; i < 50; i++)); do
  pids="$(our_pids)"
  [ -z "$pids" ] && break
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null
  sleep 0.1
done

# Mounts: volumes and the kubelet root, overlay snapshots, sandbox /dev/shm, netns.
while IFS= read -r m; do
  [ -n "$m" ] || continue
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
done < <(our_mounts)

# Network: veths, the bridge (its routes go with it), network namespaces, tables.
for v in $(our_veths); do ip link delete "$v" 2>/dev/null; done
ip link delete "$BRIDGE" 2>/dev/null
for ns in $(our_netns); do ip netns delete "$ns" 2>/dev/null || rm -f "/run/netns/$ns"; done
nft delete table ip kube-proxy 2>/dev/null
nft delete table ip6 kube-proxy 2>/dev/null
nft delete table inet "$NFT_TABLE" 2>/dev/null
# KUBE-* and CNI-* chains: first the rules elsewhere that jump to them, then their own rules, then
# the chains.
for bin in iptables ip6tables; do
  command -v "$bin-save" >/dev/null || continue
  for t in filter nat mangle; do
    "$bin-save" -t "$t" 2>/dev/null | grep -E '^-A [^ ]+ .*-j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-' |
      while IFS= read -r rule; do
        # shellcheck disable=SC2086
        eval "$bin -w 5 -t $t -D ${rule#-A }" 2>/dev/null
      done
    for c in $("$bin-save" -t "$t" 2>/dev/null | sed -nE 's/^:((KUBE|CNI)-[^ ]*) .*/\1/p'); do
      "$bin" -w 5 -t "$t" -F "$c" 2>/dev/null
    done
    for c in $("$bin-save" -t "$t" 2>/dev/null | sed -nE 's/^:((KUBE|CNI)-[^ ]*) .*/\1/p'); do
      "$bin" -w 5 -t "$t" -X "$c" 2>/dev/null
    done
  done
done

# Tables the kubelet's iptables created: removed when they were not there before up.sh
# and hold no rule and no chain of their own any more.
if [ -e "$CLUSTER_DIR/nft-tables.orig" ]; then
  for fam in ip ip6; do
    for t in filter nat mangle; do
      grep -qx "table $fam $t" "$CLUSTER_DIR/nft-tables.orig" && continue
      nft list table "$fam" "$t" >/dev/null 2>&1 || continue
      bin=iptables; [ "$fam" = ip6 ] && bin=ip6tables
      if ! "$bin-save" -t "$t" 2>/dev/null | grep -qE '^-A |^:[^ ]+ - '; then
        nft delete table "$fam" "$t" 2>/dev/null
      fi
    done
  done
fi

# cgroups: children before parents; a cgroup directory is removed with rmdir.
for cg in $(our_cgroups); do
  find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
done

# Forwarding settings as they were before up.sh.
[ -s "$CLUSTER_DIR/ip_forward.orig" ] && sysctl -qw "net.ipv4.ip_forward=$(cat "$CLUSTER_DIR/ip_forward.orig")"
[ -s "$CLUSTER_DIR/bridge-nf-call-iptables.orig" ] &&
  sysctl -qw "net.bridge.bridge-nf-call-iptables=$(cat "$CLUSTER_DIR/bridge-nf-call-iptables.orig")"

# State: keep the last logs for debugging, remove the rest.
if [ -d "$LOGS" ]; then
  rm -rf "$CLUSTER_DIR.last-logs"
  mv "$LOGS" "$CLUSTER_DIR.last-logs"
fi
rm -rf "$CLUSTER_DIR" /var/lib/cni /run/containerd/s /run/containerd/runc/k8s.io
rmdir /run/containerd/runc /run/containerd 2>/dev/null

log "down in $(( $(now_ms) - T0 )) ms"
check
