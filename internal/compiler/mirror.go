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

package compiler

import (
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/proxy/api"
)

// Gateway API's RequestMirror filter (HTTPRoute and GRPCRoute share its type). The
// mirror's backendRef resolves exactly like a rule's backendRefs (CheckBackendRef), so
// the route's ResolvedRefs condition, the destination store's Service bookkeeping and
// the compiled filter all agree on what is mirrored where.

// HTTPRuleMirrorRefs are the backendRefs of a rule's RequestMirror filters, rule-level
// first, then each backendRef's in order.
func HTTPRuleMirrorRefs(rule gatewayv1.HTTPRouteRule) []gatewayv1.BackendObjectReference {
	var out []gatewayv1.BackendObjectReference
	add := func(fs []gatewayv1.HTTPRouteFilter) {
		for _, f := range fs {
			if f.Type == gatewayv1.HTTPRouteFilterRequestMirror && f.RequestMirror != nil {
				out = append(out, f.RequestMirror.BackendRef)
			}
		}
	}
	add(rule.Filters)
	for _, b := range rule.BackendRefs {
		add(b.Filters)
	}
	return out
}

// GRPCRuleMirrorRefs is HTTPRuleMirrorRefs for a GRPCRoute rule.
func GRPCRuleMirrorRefs(rule gatewayv1.GRPCRouteRule) []gatewayv1.BackendObjectReference {
	var out []gatewayv1.BackendObjectReference
	add := func(fs []gatewayv1.GRPCRouteFilter) {
		for _, f := range fs {
			if f.Type == gatewayv1.GRPCRouteFilterRequestMirror && f.RequestMirror != nil {
				out = append(out, f.RequestMirror.BackendRef)
			}
		}
	}
	add(rule.Filters)
	for _, b := range rule.BackendRefs {
		add(b.Filters)
	}
	return out
}

// httpMirrorFilters compiles the RequestMirror filters of one HTTPRoute filter list.
func (c *compilation) httpMirrorFilters(routeNS string, fs []gatewayv1.HTTPRouteFilter) []*api.Filter {
	var out []*api.Filter
	for _, f := range fs {
		if f.Type == gatewayv1.HTTPRouteFilterRequestMirror && f.RequestMirror != nil {
			out = append(out, c.mirrorFilter(routeNS, f.RequestMirror))
		}
	}
	return out
}

// grpcMirrorFilters compiles the RequestMirror filters of one GRPCRoute filter list.
func (c *compilation) grpcMirrorFilters(routeNS string, fs []gatewayv1.GRPCRouteFilter) []*api.Filter {
	var out []*api.Filter
	for _, f := range fs {
		if f.Type == gatewayv1.GRPCRouteFilterRequestMirror && f.RequestMirror != nil {
			out = append(out, c.mirrorFilter(routeNS, f.RequestMirror))
		}
	}
	return out
}

// mirrorFilter resolves one mirror. An unusable backendRef (a missing Service, a port
// it does not have, a kind other than Service) becomes a mirror that says why and
// sends nothing: the route's ResolvedRefs condition reports the same reason, and the
// proxies count what they did not mirror. The mirror backend joins the
// destination's backends, so the proxy balances over its endpoints like any other.
func (c *compilation) mirrorFilter(routeNS string, m *gatewayv1.HTTPRequestMirrorFilter) *api.Filter {
	num, den := MirrorShare(m)
	rm := &api.RequestMirror{Numerator: num, Denominator: den}
	reason, msg, svc, port, _ := CheckBackendRef(routeNS, m.BackendRef, c.ix.getService)
	if reason != "" {
		rm.Invalid = reason + ": " + msg
	} else {
		rm.Backend = c.backend(svc, port).Key
	}
	return &api.Filter{Kind: &api.Filter_RequestMirror{RequestMirror: rm}}
}

// MirrorShare is the share of requests a mirror copies, as numerator/denominator:
// percent p is p/100, a fraction is taken as it is (its denominator defaults to
// 100), and neither is every request (denominator 0). Values the CRD's validation
// would refuse are clamped into [0, 1] rather than trusted: a negative share mirrors
// nothing, one above 1 every request.
func MirrorShare(m *gatewayv1.HTTPRequestMirrorFilter) (numerator, denominator uint32) {
	switch {
	case m.Percent != nil:
		p := min(max(*m.Percent, 0), 100)
		if p == 100 {
			return 0, 0
		}
		return uint32(p), 100
	case m.Fraction != nil:
		d := int32(100)
		if m.Fraction.Denominator != nil {
			d = *m.Fraction.Denominator
		}
		n := max(m.Fraction.Numerator, 0)
		if d <= 0 || n >= d {
			// A zero denominator is refused by the CRD; an old object that has one
			// has no meaningful share. Mirror nothing rather than everything.
			if d <= 0 {
				return 0, 1
			}
			return 0, 0
		}
		return uint32(n), uint32(d)
	}
	return 0, 0
}

// markMirrorBackends marks the backends r's mirrors (route-level and backend-level)
// send to as used, so they are sent to the proxy with their endpoints.
func markMirrorBackends(r *api.Route, used map[string]bool) {
	mark := func(fs []*api.Filter) {
		for _, f := range fs {
			if m := f.GetRequestMirror(); m != nil && m.GetBackend() != "" {
				used[m.GetBackend()] = true
			}
		}
	}
	mark(r.GetFilters())
	for _, b := range r.GetBackends() {
		mark(b.GetFilters())
	}
}
