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

// Package ctrlmetrics configures weft-controller's metrics endpoint: HTTPS, and only for
// callers the API server authenticates (TokenReview) and authorizes (SubjectAccessReview)
// to get the non-resource URL /metrics, which the ClusterRole weft-metrics-reader grants.
package ctrlmetrics

import (
	"crypto/tls"

	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// ServerOptions serves the controller's metrics on bindAddress ("0" disables them) over
// TLS with a certificate from certDir (tls.crt, tls.key; empty: a self-signed one the
// server generates at start, which Prometheus accepts with insecure_skip_verify or
// once config/certmanager issues one). The controller's metrics name every workload
// and namespace of the mesh and its reconcile errors: anyone who reaches the port was
// able to read them, so they are now behind the API server's RBAC.
func ServerOptions(bindAddress, certDir string) metricsserver.Options {
	return metricsserver.Options{
		BindAddress:    bindAddress,
		SecureServing:  true,
		CertDir:        certDir,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
		// HTTP/2 is off on the metrics endpoint: see CVE-2023-44487 (rapid reset).
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
}
