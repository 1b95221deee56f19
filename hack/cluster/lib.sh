# Shared settings and helpers of the local cluster scripts (sourced, not run).
#
# Every address the cluster uses is on loopback or on its own bridge: the API server,
# the kubelet and the node's InternalIP sit on the bridge's gateway address, which
# up.sh puts on the bridge before anything starts, so nothing depends on (or is
# reachable through) the machine's real interfaces.

HACK_CLUSTER="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_CLUSTER/../.." && pwd)"
CACHE_ROOT="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
CLUSTER_DIR="${WEFT_CLUSTER_DIR:-$CACHE_ROOT/cluster}"

NODE_NAME="${WEFT_NODE_NAME:-weft-node}"
BRIDGE="weft0"
NODE_IP="10.244.0.1"            # the bridge's address: API server, kubelet, node InternalIP
POD_CIDR="10.244.0.0/16"        # cluster CIDR; the node gets 10.244.0.0/24
NODE_POD_CIDR="10.244.0.0/24"
SERVICE_CIDR="10.96.0.0/16"
API_SERVICE_IP="10.96.0.1"
DNS_SERVICE_IP="10.96.0.10"
CLUSTER_DOMAIN="cluster.local"
API_PORT=6443
ETCD_CLIENT="127.0.0.1:2379"
ETCD_PEER="127.0.0.1:2380"
NFT_TABLE="weft_cluster"        # our own nft table: keeps pod traffic on the bridge

PKI="$CLUSTER_DIR/pki"
LOGS="$CLUSTER_DIR/logs"
PIDS="$CLUSTER_DIR/pids"
RUN="$CLUSTER_DIR/run"
CONTAINERD_SOCK="$RUN/containerd/containerd.sock"
KUBECONFIG_ADMIN="$CLUSTER_DIR/kubeconfig"
KUBELET_ROOT="$CLUSTER_DIR/kubelet"
IMAGES_DIR="$CACHE_ROOT/images"

# Start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

LOG_TAG="${LOG_TAG:-cluster}"
log() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "$LOG_TAG" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# now_ms prints a monotonic-enough wall clock in milliseconds for the timings we print.
now_ms() { date +%s%3N; }

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND... polls COMMAND until it succeeds. The
# interval is short and grows a little, so fast steps are not delayed by a fixed sleep.
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local start deadline interval=0.1
  start="$(now_ms)"; deadline=$((start + timeout * 1000))
  until "$@" >/dev/null 2>&1; do
    if [ "$(now_ms)" -ge "$deadline" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep "$interval"
    case "$interval" in 0.1) interval=0.2 ;; 0.2) interval=0.5 ;; esac
  done
  log "$what ($(( ($(now_ms) - start) )) ms)"
}

pid_of() { [ -s "$PIDS/$1.pid" ] && cat "$PIDS/$1.pid"; }
# running_pid PID: the process exists and is not a zombie. The components are reparented
# to PID 1 once up.sh exits, and PID 1 may reap them late; a zombie has exited.
running_pid() {
  local st
  st="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$st" ] && [ "${st%% *}" != Z ]
}
alive() { local p; p="$(pid_of "$1")" && [ -n "$p" ] && running_pid "$p"; }

# lock_cluster serialises up.sh and down.sh (several people may drive the one cluster):
# it waits for the lock and holds it until the script exits. A script that the lock
# holder runs (up.sh running down.sh) inherits the lock instead of waiting for itself.
lock_cluster() {
  [ "${WEFT_CLUSTER_LOCKED:-}" = 1 ] && return 0
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/cluster.lock"
  if ! flock -n 9; then
    log "waiting for another up.sh/down.sh to finish"
    flock 9
  fi
  export WEFT_CLUSTER_LOCKED=1
}

kc() { kubectl --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
