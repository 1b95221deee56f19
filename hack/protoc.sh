#!/usr/bin/env bash
# Generates Go code for the proxy API with Debian's protoc and the protoc-gen-go /
# protoc-gen-go-grpc plugins installed into the given bin directory.
#
# proxy/api/*.proto hold the messages (package proxy/api, protobuf only); the gRPC
# services are declared in proxy/api/apigrpc/*.proto (package proxy/api/apigrpc), whose
# stubs import grpc-go. The proxy imports only proxy/api and speaks gRPC over net/http,
# so grpc-go stays out of weft-proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?usage: hack/protoc.sh <bin dir with protoc-gen-go and protoc-gen-go-grpc>}"
shopt -s nullglob
protos=(proxy/api/*.proto)
services=(proxy/api/apigrpc/*.proto)
[ ${#protos[@]} -eq 0 ] && exit 0
command -v protoc >/dev/null || { echo "protoc is missing: apt-get install protobuf-compiler" >&2; exit 1; }
# Stubs from an earlier layout would duplicate the service stubs in proxy/api.
rm -f proxy/api/*_grpc.pb.go
PATH="$bin:$PATH" protoc -I proxy/api \
  --go_out=proxy/api --go_opt=paths=source_relative \
  "${protos[@]}"
[ ${#services[@]} -eq 0 ] && exit 0
PATH="$bin:$PATH" protoc -I proxy/api \
  --go_out=proxy/api --go_opt=paths=source_relative \
  --go-grpc_out=proxy/api --go-grpc_opt=paths=source_relative \
  "${services[@]#proxy/api/}"
