// Package config embeds the manifests `weft install` applies, so the CLI installs
// exactly what is in this directory: the render of config/default (weft-install.yaml,
// written by `make manifests` with kustomize, so CI's no-diff check covers it) and the
// Gateway API CRDs of both release channels (copied from the pinned gateway-api module
// by hack/upstream-crds.sh). The Gateway API CRDs are not in config/default: they are
// an optional part of the install (docs/install.md).
package config

import "embed"

// WeftInstall is `kustomize build config/default`: every object of the install except
// the Gateway API CRDs.
//
//go:embed weft-install.yaml
var WeftInstall []byte

// GatewayAPI holds the Gateway API CRDs: gateway-api/ (standard channel) and
// gateway-api-experimental/, one CRD per file named gateway.networking.k8s.io_*.yaml.
//
//go:embed crd/gateway-api/gateway.networking.k8s.io_*.yaml crd/gateway-api-experimental/gateway.networking.k8s.io_*.yaml
var GatewayAPI embed.FS
