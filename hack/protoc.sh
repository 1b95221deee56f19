#!/usr/bin/env bash
# Generates Go code for the proxy API (proxy/api/*.proto) with Debian's protoc and the
# protoc-gen-go / protoc-gen-go-grpc plugins installed into the given bin directory.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?usage: hack/protoc.sh <bin dir with protoc-gen-go and protoc-gen-go-grpc>}"
shopt -s nullglob
protos=(proxy/api/*.proto)
[ ${#protos[@]} -eq 0 ] && exit 0
command -v protoc >/dev/null || { echo "protoc is missing: apt-get install protobuf-compiler" >&2; exit 1; }
PATH="$bin:$PATH" protoc -I proxy/api \
  --go_out=proxy/api --go_opt=paths=source_relative \
  --go-grpc_out=proxy/api --go-grpc_opt=paths=source_relative \
  "${protos[@]}"
