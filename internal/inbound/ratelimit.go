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

package inbound

import (
	"slices"

	"k8s.io/apimachinery/pkg/util/validation/field"

	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
)

// KindHTTPLocalRateLimitPolicy is the kind of a rate limit's ref on the wire.
const KindHTTPLocalRateLimitPolicy = "HTTPLocalRateLimitPolicy"

// maxRate is the schema's bound on a rate (requests per second).
const maxRate = 1_000_000

// ValidateRateLimit repeats the CRD's rules on an HTTPLocalRateLimitPolicy, for objects
// stored before them (or written around the schema): the status reconciler reports
// them, and the compiler drops a policy that breaks one, so bad input never becomes a
// limit the user did not write (a rate of 0 would refuse every request).
func ValidateRateLimit(p *policyv1alpha1.HTTPLocalRateLimitPolicy) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	t := p.Spec.TargetRef
	if !IsPolicyGroup(t.Group) || t.Kind != KindServer {
		errs = append(errs, field.NotSupported(spec.Child("targetRef", "kind"), t.Group+"/"+t.Kind, []string{"policy.weft.dev/Server"}))
	}
	rate := func(path *field.Path, v int32) {
		if v < 1 || v > maxRate {
			errs = append(errs, field.Invalid(path, v, "must be from 1 to 1000000"))
		}
	}
	if p.Spec.Total != nil {
		rate(spec.Child("total", "requestsPerSecond"), p.Spec.Total.RequestsPerSecond)
	}
	if p.Spec.Identity != nil {
		rate(spec.Child("identity", "requestsPerSecond"), p.Spec.Identity.RequestsPerSecond)
		if p.Spec.Total != nil && p.Spec.Identity.RequestsPerSecond > p.Spec.Total.RequestsPerSecond {
			errs = append(errs, field.Invalid(spec.Child("identity", "requestsPerSecond"), p.Spec.Identity.RequestsPerSecond,
				"must not exceed total.requestsPerSecond"))
		}
	}
	for i, o := range p.Spec.Overrides {
		op := spec.Child("overrides").Index(i)
		rate(op.Child("requestsPerSecond"), o.RequestsPerSecond)
		if p.Spec.Total != nil && o.RequestsPerSecond > p.Spec.Total.RequestsPerSecond {
			errs = append(errs, field.Invalid(op.Child("requestsPerSecond"), o.RequestsPerSecond, "must not exceed total.requestsPerSecond"))
		}
		if len(o.ClientRefs.TargetRefs) == 0 {
			errs = append(errs, field.Required(op.Child("clientRefs", "targetRefs"), "name at least one ServiceAccount"))
		}
		for j, r := range o.ClientRefs.TargetRefs {
			if r.Group != "" || r.Kind != "ServiceAccount" {
				errs = append(errs, field.NotSupported(op.Child("clientRefs", "targetRefs").Index(j).Child("kind"),
					r.Group+"/"+r.Kind, []string{"ServiceAccount"}))
			}
		}
	}
	return errs
}

// OlderRateLimit says whether a takes precedence over b where both target the same
// Server: the older (creation time), then the name first in order. The status
// reconciler reports the other Conflicted, so the policy it names is the one applied.
func OlderRateLimit(a, b *policyv1alpha1.HTTPLocalRateLimitPolicy) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// RateLimit compiles an HTTPLocalRateLimitPolicy in trust domain td: its overrides'
// ServiceAccounts become their SPIFFE IDs. It returns nil for a policy that breaks a
// rule of ValidateRateLimit: such a policy limits nothing (it never refuses requests
// the user did not mean to refuse).
func RateLimit(p *policyv1alpha1.HTTPLocalRateLimitPolicy, td string) *api.RateLimit {
	if len(ValidateRateLimit(p)) > 0 {
		return nil
	}
	rl := &api.RateLimit{Ref: &api.PolicyRef{Group: PolicyGroup, Kind: KindHTTPLocalRateLimitPolicy, Namespace: p.Namespace, Name: p.Name}}
	if p.Spec.Total != nil {
		rl.Total = uint32(p.Spec.Total.RequestsPerSecond)
	}
	if p.Spec.Identity != nil {
		rl.Identity = uint32(p.Spec.Identity.RequestsPerSecond)
	}
	for _, o := range p.Spec.Overrides {
		ov := &api.RateLimitOverride{RequestsPerSecond: uint32(o.RequestsPerSecond)}
		for _, r := range o.ClientRefs.TargetRefs {
			ns := r.Namespace
			if ns == "" {
				ns = p.Namespace
			}
			ov.Ids = append(ov.Ids, peertls.WorkloadID(td, ns, r.Name))
		}
		slices.Sort(ov.Ids)
		ov.Ids = slices.Compact(ov.Ids)
		rl.Overrides = append(rl.Overrides, ov)
	}
	return rl
}

// rateLimits returns, per Server name, the rate limit of the oldest valid policy of the
// pod's namespace that targets it.
func (c *compilation) rateLimits() map[string]*api.RateLimit {
	winner := map[string]*policyv1alpha1.HTTPLocalRateLimitPolicy{}
	for _, p := range c.in.RateLimitPolicies {
		if p.Namespace != c.ns || len(ValidateRateLimit(p)) > 0 {
			continue
		}
		name := p.Spec.TargetRef.Name
		if w := winner[name]; w == nil || OlderRateLimit(p, w) {
			winner[name] = p
		}
	}
	out := make(map[string]*api.RateLimit, len(winner))
	for name, p := range winner {
		out[name] = RateLimit(p, c.trustDomain)
	}
	return out
}
