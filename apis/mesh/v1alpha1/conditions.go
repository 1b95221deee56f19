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

package v1alpha1

// Condition types shared by Weft's kinds. They follow the kstatus conventions so that
// Flux and Argo CD judge health from Ready and observedGeneration without custom checks.
const (
	// ConditionReady summarises the object: True when it is accepted and every
	// subsystem it depends on works.
	ConditionReady = "Ready"
	// ConditionAccepted is True when the spec is valid and Weft acts on it.
	ConditionAccepted = "Accepted"
	// ConditionResolvedRefs is True when every object the spec refers to exists.
	ConditionResolvedRefs = "ResolvedRefs"

	// ConditionTrustAnchorReady is True when the trust anchor certificate is issued.
	ConditionTrustAnchorReady = "TrustAnchorReady"
	// ConditionIssuerReady is True when the identity issuer certificate is issued.
	ConditionIssuerReady = "IssuerReady"
	// ConditionIdentityReady is True when the identity service can sign workload
	// certificates.
	ConditionIdentityReady = "IdentityReady"
	// ConditionTracingReady (Mesh, only while spec.tracing is set) is True when the
	// proxies have been given the tracing configuration, False with reason Invalid when
	// the collector address cannot be dialled as written (the proxies then do no
	// tracing).
	ConditionTracingReady = "TracingReady"
)

// Condition reasons shared by Weft's kinds.
const (
	// ReasonAccepted: the spec is valid.
	ReasonAccepted = "Accepted"
	// ReasonInvalid: the spec is valid for the API server but not usable; the message
	// names the field and what to change.
	ReasonInvalid = "Invalid"
	// ReasonResolved: every reference resolves.
	ReasonResolved = "Resolved"
	// ReasonRefNotFound: a referenced object does not exist (yet). Weft keeps watching,
	// so applying the object later is enough.
	ReasonRefNotFound = "RefNotFound"
	// ReasonReady: everything works.
	ReasonReady = "Ready"
	// ReasonNotReady: something the object depends on is not ready; the message says what.
	ReasonNotReady = "NotReady"
	// ReasonPending: work is under way (for example a certificate is being issued).
	ReasonPending = "Pending"
)
