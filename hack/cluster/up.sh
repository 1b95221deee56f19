#!/usr/bin/env bash
# Starts a single-node Kubernetes cluster on this machine (make cluster-up).
#
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet and
# kube-proxy run as background processes of this machine (PID files and logs under
# $WEFT_CLUSTER_DIR, default ~/.cache/weft/cluster); CoreDNS runs in the cluster. The
# binaries are built once from the Go module proxy into ~/.cache/weft (pinned versions).
# Everything listens on loopback or on the cluster's own bridge (weft0, 10.244.0.1).
#
# Idempotent: a healthy cluster is left alone; leftovers of a crashed run are torn down
# first. See docs/cluster.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root (containers, network namespaces, cgroups)"
lock_cluster

T0="$(now_ms)"

# --- packages ---------------------------------------------------------------------------
# command-or-path=debian-package
need=(
  containerd=containerd
  ctr=containerd
  /usr/sbin/runc=runc
  /usr/lib/cni/bridge=containernetworking-plugins
  iptables=iptables
  nft=nftables
  openssl=openssl
  kubectl=kubectl
  curl=curl
  dig=bind9-dnsutils
)
missing=()
for n in "${need[@]}"; do
  what="${n%%=*}" pkg="${n#*=}"
  if [[ "$what" == /* ]]; then [ -x "$what" ] && continue; else command -v "$what" >/dev/null && continue; fi
  case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  # A fresh machine may not have package lists yet: update once and retry.
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; } ||
    die "apt-get install ${missing[*]} failed"
fi

# --- already up? ------------------------------------------------------------------------
healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  [ -s "$KUBECONFIG_ADMIN" ] || return 1
  [ "$(kc get --raw /readyz 2>/dev/null)" = ok ] || return 1
  [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] || return 1
  [ "$(kc -n kube-system get deploy coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" -ge 1 ] 2>/dev/null || return 1
  dns_ok
}
dns_ok() {
  [ "$(dig +short +time=1 +tries=1 @"$DNS_SERVICE_IP" "kubernetes.default.svc.$CLUSTER_DOMAIN" A 2>/dev/null)" = "$API_SERVICE_IP" ]
}
if healthy; then
  log "already up and healthy (${NODE_NAME} Ready, CoreDNS answering)"
  "$HACK_CLUSTER/env.sh"
  exit 0
fi

# --- binaries ---------------------------------------------------------------------------
tb="$(now_ms)"
# CoreDNS builds beside the Kubernetes binaries: on a cold machine neither build keeps
# both cores busy all the time (downloads, links), so together they finish sooner.
"$HACK_CLUSTER/coredns.sh" >"$CACHE_ROOT/coredns.build.out" &
coredns_build=$!
KUBE_BIN="$("$REPO_ROOT/hack/kube-binaries.sh" kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy | tail -1)"
wait "$coredns_build" || die "building CoreDNS failed"
rm -f "$CACHE_ROOT/coredns.build.out"
# The sandbox (pause) and CoreDNS images must exist before the first pod.
"$REPO_ROOT/hack/images.sh" --no-import pause coredns >/dev/null
log "binaries and base images ready ($(( $(now_ms) - tb )) ms)"
export PATH="$KUBE_BIN:$PATH"

# --- leftovers of an earlier run --------------------------------------------------------
if [ -e "$CLUSTER_DIR/state" ] || [ -d "$PIDS" ] || ip link show "$BRIDGE" >/dev/null 2>&1 || ! "$HACK_CLUSTER/down.sh" --check >/dev/null 2>&1; then
  log "cleaning up an earlier run first"
  "$HACK_CLUSTER/down.sh" >&2 || die "could not clean up the earlier run; see the messages above"
fi

for port in 2379 2380 "$API_PORT" 10250 10257 10259 10248 10249 10256; do
  if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use: $(ss -Hltnp "sport = :$port")"; fi
done

mkdir -p "$CLUSTER_DIR" "$PKI" "$LOGS" "$PIDS" "$RUN" "$CLUSTER_DIR/etc" "$CLUSTER_DIR/cni/net.d"
echo "up $(date -u +%FT%TZ)" >"$CLUSTER_DIR/state"

# --- network: our own bridge, forwarding, and a fence ----------------------------------
# The bridge exists before the API server so that the node address is on it from the
# start; the CNI bridge plugin adopts it. Service addresses are routed onto the bridge
# so that the host reaches them from its bridge address, never from its real interface.
sysctl -n net.ipv4.ip_forward >"$CLUSTER_DIR/ip_forward.orig"
# The kubelet's iptables (nft variant) creates the ip/ip6 filter, nat and mangle tables
# if missing; down.sh removes those that were not here before and are empty again.
nft list tables >"$CLUSTER_DIR/nft-tables.orig"
sysctl -n net.bridge.bridge-nf-call-iptables >"$CLUSTER_DIR/bridge-nf-call-iptables.orig"
ip link add "$BRIDGE" type bridge
ip addr add "$NODE_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
ip route add "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
sysctl -qw net.ipv4.ip_forward=1
# Pod-to-Service replies between two pods on the bridge must pass the host's netfilter
# for kube-proxy's DNAT to be undone.
sysctl -qw net.bridge.bridge-nf-call-iptables=1
# Nothing leaves the machine: pods may talk to each other and to the host, but packets
# from the bridge are never forwarded to another interface.
nft -f - <<EOF
table inet $NFT_TABLE {
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname "$BRIDGE" oifname != "$BRIDGE" drop
  }
}
EOF

# --- PKI --------------------------------------------------------------------------------
tp="$(now_ms)"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null; }
# cert NAME CN O EXTKEYUSAGE [SAN]
cert() {
  local name="$1" cn="$2" o="$3" eku="$4" san="${5:-}" subj="/CN=$2"
  [ -n "$o" ] && subj="/O=$o/CN=$cn"
  key "$name"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
key ca
openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=weft-local-cluster-ca" -days 3650 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
  -out "$PKI/ca.crt" 2>/dev/null
cert apiserver kube-apiserver "" serverAuth \
  "IP:$NODE_IP,IP:127.0.0.1,IP:$API_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
cert admin weft-admin system:masters clientAuth
cert controller-manager system:kube-controller-manager "" clientAuth
cert scheduler system:kube-scheduler "" clientAuth
cert kubelet "system:node:$NODE_NAME" system:nodes clientAuth
cert kubelet-serving "system:node:$NODE_NAME" system:nodes serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
cert kube-proxy system:kube-proxy "" clientAuth
# The front proxy: how the API server proves itself to aggregated APIs (the tap API,
# APIService v1alpha1.tap.weft.dev). Its own CA, so that no client certificate of the
# cluster CA can pose as the API server to an extension API server.
key front-proxy-ca
openssl req -x509 -new -key "$PKI/front-proxy-ca.key" -subj "/CN=weft-local-front-proxy-ca" -days 3650 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
  -out "$PKI/front-proxy-ca.crt" 2>/dev/null
key front-proxy-client
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$PKI/front-proxy-client.ext"
openssl req -new -key "$PKI/front-proxy-client.key" -subj "/CN=front-proxy-client" -out "$PKI/front-proxy-client.csr" 2>/dev/null
openssl x509 -req -in "$PKI/front-proxy-client.csr" -CA "$PKI/front-proxy-ca.crt" -CAkey "$PKI/front-proxy-ca.key" -CAcreateserial \
  -days 365 -extfile "$PKI/front-proxy-client.ext" -out "$PKI/front-proxy-client.crt" 2>/dev/null
rm -f "$PKI/front-proxy-client.csr" "$PKI/front-proxy-client.ext"
key sa
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
chmod 0600 "$PKI"/*.key

kubeconfig() { # NAME USER
  cat >"$CLUSTER_DIR/$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: weft-local
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: weft-local
  context: {cluster: weft-local, user: $2}
current-context: weft-local
EOF
}
kubeconfig controller-manager.kubeconfig controller-manager
kubeconfig scheduler.kubeconfig scheduler
kubeconfig kubelet.kubeconfig kubelet
kubeconfig kube-proxy.kubeconfig kube-proxy
# The admin kubeconfig embeds its credentials so that it can be copied elsewhere.
kubectl config set-cluster weft-local --kubeconfig="$KUBECONFIG_ADMIN.tmp" --server="https://$NODE_IP:$API_PORT" \
  --certificate-authority="$PKI/ca.crt" --embed-certs >/dev/null
kubectl config set-credentials weft-admin --kubeconfig="$KUBECONFIG_ADMIN.tmp" \
  --client-certificate="$PKI/admin.crt" --client-key="$PKI/admin.key" --embed-certs >/dev/null
kubectl config set-context weft-local --kubeconfig="$KUBECONFIG_ADMIN.tmp" --cluster=weft-local --user=weft-admin >/dev/null
kubectl config use-context weft-local --kubeconfig="$KUBECONFIG_ADMIN.tmp" >/dev/null
mv "$KUBECONFIG_ADMIN.tmp" "$KUBECONFIG_ADMIN"
log "PKI and kubeconfigs written ($(( $(now_ms) - tp )) ms)"

# --- processes --------------------------------------------------------------------------
# start NAME COMMAND...: a new session (so that neither this script's exit nor its
# caller's process group takes it down), output in logs/NAME.log, PID in pids/NAME.pid.
start() {
  local name="$1"; shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$PIDS/$name.pid"
}
# running NAME fails as soon as the process died, so waits end early with its log.
running() {
  alive "$1" && return 0
  log "$1 exited; last lines of $LOGS/$1.log:"; tail -n 20 "$LOGS/$1.log" >&2; exit 1
}
wait_up() { # NAME DESCRIPTION TIMEOUT COMMAND...
  local name="$1" what="$2" timeout="$3"; shift 3
  local start deadline
  start="$(now_ms)"; deadline=$((start + timeout * 1000))
  until "$@" >/dev/null 2>&1; do
    running "$name"
    [ "$(now_ms)" -lt "$deadline" ] || { log "timed out after ${timeout}s waiting for $what; see $LOGS/$name.log"; exit 1; }
    sleep 0.2
  done
  log "$what ($(( $(now_ms) - start )) ms)"
}

start etcd "$KUBE_BIN/etcd" --name weft-local --data-dir "$CLUSTER_DIR/etcd" \
  --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
  --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
  --initial-cluster "weft-local=http://$ETCD_PEER" --listen-metrics-urls "" \
  --quota-backend-bytes 2147483648 --log-level warn
wait_up etcd "etcd healthy" 60 sh -c "curl -fsS http://$ETCD_CLIENT/health | grep -q '\"health\":\"true\"'"

start kube-apiserver "$KUBE_BIN/kube-apiserver" \
  --etcd-servers "http://$ETCD_CLIENT" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
  --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC --allow-privileged=true \
  --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --enable-aggregator-routing=true \
  --enable-admission-plugins NodeRestriction \
  --profiling=false --v=1
wait_up kube-apiserver "API server ready" 120 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG_ADMIN' get --raw /readyz)\" = ok ]"

start kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
  --kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --allocate-node-cidrs --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
  --profiling=false --v=1
start kube-scheduler "$KUBE_BIN/kube-scheduler" \
  --kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1

# containerd: Debian's 1.6 with private root/state directories and socket.
# restrict_oom_score_adj is required on these VMs (no CAP_SYS_RESOURCE): without it
# every sandbox fails with "can't get final child's PID from pipe".
cat >"$CLUSTER_DIR/etc/containerd.toml" <<EOF
version = 2
root = "$CLUSTER_DIR/containerd"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[debug]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/pause:dev"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "$RUN/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CLUSTER_DIR/cni/net.d"
EOF
# Bridge + host-local on the node's /24; portmap for hostPort. The bridge already exists
# with the gateway address; the plugin attaches each pod's veth to it.
cat >"$CLUSTER_DIR/cni/net.d/10-weft.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "weft-local",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$CLUSTER_DIR/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
start containerd containerd --config "$CLUSTER_DIR/etc/containerd.toml"
wait_up containerd "containerd serving" 60 ctr --address "$CONTAINERD_SOCK" version

# The sandbox and CoreDNS images first: nothing starts without them. Every other image
# built earlier (make images) comes back after a teardown too; those imports run in the
# background, side by side, while the node starts, and are waited for at the end.
ti="$(now_ms)"
ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$IMAGES_DIR/pause.tar" >/dev/null
ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$IMAGES_DIR/coredns.tar" >/dev/null
log "imported pause:dev and coredns:dev ($(( $(now_ms) - ti )) ms)"
import_pids=()
import_names=()
for tarball in "$IMAGES_DIR"/*.tar; do
  case "$tarball" in */pause.tar | */coredns.tar) continue ;; esac
  [ -e "$tarball" ] || continue
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$tarball" >/dev/null &
  import_pids+=($!)
  import_names+=("$(basename "$tarball" .tar):dev")
done

cat >"$CLUSTER_DIR/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SERVICE_IP]
# Pods with dnsPolicy Default get no upstream resolver: nothing is resolved off-machine.
resolvConf: ""
podLogsDirectory: $CLUSTER_DIR/pod-logs
serializeImagePulls: false
maxPods: 110
# A development machine's disk is never "under pressure" for our purposes; images are
# imported locally and cannot be pulled again, so image GC must not remove them.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 87600h
EOF
start kubelet "$KUBE_BIN/kubelet" --config "$CLUSTER_DIR/etc/kubelet.yaml" \
  --kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" --root-dir "$KUBELET_ROOT" \
  --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --v=1

cat >"$CLUSTER_DIR/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $CLUSTER_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: ["$NODE_IP/32"]
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
start kube-proxy "$KUBE_BIN/kube-proxy" --config "$CLUSTER_DIR/etc/kube-proxy.yaml" --v=1

node_ready() {
  [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_up kubelet "node $NODE_NAME Ready" 120 node_ready
running kube-proxy; running kube-controller-manager; running kube-scheduler

# --- CoreDNS ----------------------------------------------------------------------------
kc apply -f "$HACK_CLUSTER/coredns.yaml" >/dev/null
wait_up kubelet "CoreDNS Ready" 120 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG_ADMIN' -n kube-system get deploy coredns -o jsonpath='{.status.readyReplicas}')\" -ge 1 ]"
wait_up kube-proxy "kubernetes.default resolves via $DNS_SERVICE_IP" 60 dns_ok

for p in "${import_pids[@]}"; do wait "$p" || die "importing a cached image from $IMAGES_DIR failed"; done
[ ${#import_names[@]} -gt 0 ] && log "images of an earlier make images imported: ${import_names[*]}"

echo "ready $(date -u +%FT%TZ)" >"$CLUSTER_DIR/state"
log "cluster up in $(( ($(now_ms) - T0) / 1000 )).$(( ($(now_ms) - T0) % 1000 / 100 )) s"
"$HACK_CLUSTER/env.sh"
