#!/usr/bin/env bash
# Prints the environment for using the local cluster:
#   eval "$(hack/cluster/env.sh)"
# KUBECONFIG for kubectl and client-go, CONTAINERD_ADDRESS and CONTAINERD_NAMESPACE for
# ctr (the cluster's containerd has a private socket).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
echo "export CONTAINERD_ADDRESS=$CONTAINERD_SOCK"
echo "export CONTAINERD_NAMESPACE=k8s.io"
