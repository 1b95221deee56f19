/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package certmanager runs the real cert-manager controllers in the test process against
// a test API server. It is the test-facing name of internal/certmanager, which also
// backs cmd/weft-cert-manager; see that package for how the controllers are built.
package certmanager

import (
	"context"
	"errors"

	"github.com/weftmesh/weft/internal/certmanager"
)

// Controllers are the cert-manager controllers Start runs: the Certificate pipeline,
// the CertificateRequest approver, the selfSigned and CA signers, and the issuer status
// controllers. ACME, Vault, Venafi and the ingress/gateway shims are left out.
var Controllers = certmanager.Controllers

// Config says how to run the controllers. RESTConfig is required here: a test always
// has its own API server.
type Config = certmanager.Config

// Start builds the controllers and runs them until ctx is done. It returns once the
// informers have synced, so objects created afterwards are acted on. The goroutines it
// starts end when ctx ends; errors they meet after Start returns are logged.
func Start(ctx context.Context, cfg Config) error {
	if cfg.RESTConfig == nil {
		return errors.New("certmanager: RESTConfig is required")
	}
	return certmanager.Start(ctx, cfg)
}
