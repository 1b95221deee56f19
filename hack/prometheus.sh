#!/usr/bin/env bash
# A real Prometheus (Debian's prometheus package, /usr/bin/prometheus) for the local
# cluster, run on the host: pod addresses exist on the host's bridge (notes on the
# local cluster), so the host scrapes the proxies directly, and Kubernetes service
# discovery reads the API server through the cluster's kubeconfig.
#
#   hack/prometheus.sh up     start it (idempotent), wait until it is ready, print its URL
#   hack/prometheus.sh down   stop it (by its PID) and remove its data
#
# The scrape jobs are config/prometheus/scrape-config.yaml's, as a user's Prometheus in
# the cluster would run them, relabelings unchanged. Debian builds Prometheus without
# Kubernetes service discovery, so hack/prometheus/podsd stands in for it (HTTP service
# discovery with the pod role's __meta_kubernetes_pod_* labels) and renders the file
# with each kubernetes_sd_configs entry pointing at it; the controller job gets a token
# of the ServiceAccount weft-system/weft-prometheus, bound to the ClusterRole
# weft-metrics-reader (created here, deleted by down).
#
#   KUBECONFIG          the cluster (hack/cluster/env.sh prints it)
#   PROM_DIR            its state (default ~/.cache/weft/prometheus)
#   PROM_ADDR           where Prometheus listens (default 127.0.0.1:9095)
#   PROM_SD_ADDR        where podsd listens (default 127.0.0.1:9096)
#   PROM_INTERVAL       scrape, evaluation and discovery interval (default 5s)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${PROM_DIR:-$HOME/.cache/weft/prometheus}"
ADDR="${PROM_ADDR:-127.0.0.1:9095}"
SD_ADDR="${PROM_SD_ADDR:-127.0.0.1:9096}"
INTERVAL="${PROM_INTERVAL:-5s}"
PROM=/usr/bin/prometheus

running() { [ -f "$DIR/${1:-pid}" ] && kill -0 "$(cat "$DIR/${1:-pid}")" 2>/dev/null; }

stop() { # $1: the pid file
  if running "$1"; then
    pid=$(cat "$DIR/$1")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
  fi
}

down() {
  stop pid
  stop sd.pid
  if [ -n "${KUBECONFIG:-}" ]; then
    kubectl delete clusterrolebinding weft-prometheus --ignore-not-found >/dev/null 2>&1 || true
    kubectl -n weft-system delete serviceaccount weft-prometheus --ignore-not-found >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
}

up() {
  : "${KUBECONFIG:?KUBECONFIG must name the cluster (eval \"\$(hack/cluster/env.sh)\")}"
  [ -x "$PROM" ] || { echo "prometheus: $PROM not found: apt-get install prometheus" >&2; exit 1; }
  if running; then echo "http://$ADDR"; return; fi
  mkdir -p "$DIR/data"
  kubectl -n weft-system create serviceaccount weft-prometheus --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl create clusterrolebinding weft-prometheus --clusterrole=weft-metrics-reader \
    --serviceaccount=weft-system:weft-prometheus --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n weft-system create token weft-prometheus --duration=24h >"$DIR/token"
  go build -o "$DIR/podsd" ./hack/prometheus/podsd
  rm -f "$DIR/prometheus.yml"
  "$DIR/podsd" -kubeconfig "$KUBECONFIG" -scrape-config config/prometheus/scrape-config.yaml \
    -out "$DIR/prometheus.yml" -token-file "$DIR/token" -listen "$SD_ADDR" -interval "$INTERVAL" >"$DIR/podsd.log" 2>&1 &
  echo $! >"$DIR/sd.pid"
  for _ in $(seq 50); do [ -s "$DIR/prometheus.yml" ] && break; running sd.pid || break; sleep 0.2; done
  [ -s "$DIR/prometheus.yml" ] || { echo "podsd did not start; its log:" >&2; cat "$DIR/podsd.log" >&2; exit 1; }
  "$PROM" --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
    --web.listen-address="$ADDR" --storage.tsdb.retention.time=2h >"$DIR/prometheus.log" 2>&1 &
  echo $! >"$DIR/pid"
  for _ in $(seq 100); do
    if curl -fsS "http://$ADDR/-/ready" >/dev/null 2>&1; then echo "http://$ADDR"; return; fi
    running || break
    sleep 0.2
  done
  echo "prometheus did not become ready; its log:" >&2
  tail -n 30 "$DIR/prometheus.log" >&2
  exit 1
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
