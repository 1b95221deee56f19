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

package identity

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The identity service's metrics, on controller-runtime's registry so the manager's
// /metrics endpoint serves them.
var (
	// IssuedTotal counts signed workload certificates.
	IssuedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "weft_identity_certificates_issued_total",
		Help: "Workload certificates signed by the identity service.",
	})
	// RejectedTotal counts refused requests by reason.
	RejectedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_identity_certificates_rejected_total",
		Help: "Certify requests the identity service refused, by reason.",
	}, []string{"reason"})
	// IssuerExpiry is the notAfter of the loaded identity issuer.
	IssuerExpiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weft_identity_issuer_expiration_timestamp_seconds",
		Help: "When the identity issuer certificate in use expires, in seconds since the epoch.",
	})
	// TokenReviewsTotal counts how tokens that passed the local checks were
	// authenticated: cached (no API call), authenticated or rejected by a TokenReview,
	// error (the API call failed), throttled (over the global review rate).
	TokenReviewsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_identity_token_reviews_total",
		Help: "Tokens that passed the local checks, by outcome: cached, authenticated, rejected, error, throttled.",
	}, []string{"result"})
	// IssuerUsableGauge is 1 while the identity issuer may sign (valid, with at least a
	// leaf lifetime left), 0 when the service refuses to sign with it.
	IssuerUsableGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weft_identity_issuer_usable",
		Help: "1 when the identity issuer in use may sign workload certificates, 0 when it is expiring, expired or not yet valid and the service refuses to sign.",
	})
	// AnchorExpiry is the notAfter of the trust anchor the loaded issuer chains to.
	AnchorExpiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weft_identity_trust_anchor_expiration_timestamp_seconds",
		Help: "When the trust anchor of the identity issuer in use expires, in seconds since the epoch.",
	})
)

func init() {
	ctrlmetrics.Registry.MustRegister(IssuedTotal, RejectedTotal, IssuerExpiry, AnchorExpiry, TokenReviewsTotal, IssuerUsableGauge)
	// Pre-create every reason so dashboards see zeros rather than gaps.
	for _, r := range []string{ReasonMalformedRequest, ReasonMalformedCSR, ReasonUnsupportedKey, ReasonExtraSANs,
		ReasonCARequested, ReasonCSRIdentity, ReasonTokenRejected, ReasonNotSA, ReasonIdentityMismatch, ReasonUnavailable,
		ReasonTokenMalformed, ReasonTokenAudience, ReasonTokenExpired, ReasonRateLimited, ReasonReviewsBusy,
		ReasonIssuerExpiring, ReasonIssuerNotYetValid, ReasonReservedIdentity} {
		RejectedTotal.WithLabelValues(r)
	}
	for _, r := range []string{"cached", "authenticated", "rejected", "error", "throttled"} {
		TokenReviewsTotal.WithLabelValues(r)
	}
}
