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
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/proxy/api"
)

// Fault injection: an HTTPRoute or GRPCRoute rule's ExtensionRef filter naming an
// HTTPFault (group mesh.weft.dev) in the route's namespace, or a ServiceProfile route's
// fault field, becomes a Filter.fault the client proxy applies.

// KindHTTPFault is the kind an ExtensionRef filter names.
const KindHTTPFault = "HTTPFault"

// IsFaultRef says whether an ExtensionRef filter names an HTTPFault.
func IsFaultRef(ref *gatewayv1.LocalObjectReference) bool {
	return ref != nil && string(ref.Group) == meshv1alpha1.GroupVersion.Group && string(ref.Kind) == KindHTTPFault
}

// HTTPFaultRefs are the names of the HTTPFaults a route's rules' filters name.
func HTTPFaultRefs(rules []gatewayv1.HTTPRouteRule) []string {
	var out []string
	for _, r := range rules {
		for _, f := range r.Filters {
			if f.Type == gatewayv1.HTTPRouteFilterExtensionRef && IsFaultRef(f.ExtensionRef) {
				out = append(out, string(f.ExtensionRef.Name))
			}
		}
	}
	return out
}

// GRPCFaultRefs are the names of the HTTPFaults a GRPCRoute's rules' filters name.
func GRPCFaultRefs(rules []gatewayv1.GRPCRouteRule) []string {
	var out []string
	for _, r := range rules {
		for _, f := range r.Filters {
			if f.Type == gatewayv1.GRPCRouteFilterExtensionRef && IsFaultRef(f.ExtensionRef) {
				out = append(out, string(f.ExtensionRef.Name))
			}
		}
	}
	return out
}

// perMillion turns a percentage (0-100, clamped) into parts per million.
func perMillion(pct int32) uint32 {
	return uint32(min(max(pct, 0), 100)) * 10_000
}

// FaultFilter compiles an HTTPFault. A delay that does not parse (the schema refuses
// it) is left out rather than guessed.
func FaultFilter(f *meshv1alpha1.HTTPFault) *api.Filter {
	out := &api.Fault{Namespace: f.Namespace, Name: f.Name}
	if a := f.Spec.Abort; a != nil {
		ab := &api.FaultAbort{PerMillion: perMillion(a.Percentage)}
		if a.HTTPStatus != nil {
			ab.HttpStatus = uint32(*a.HTTPStatus)
		}
		if a.GRPCStatus != nil {
			ab.GrpcStatus = uint32(*a.GRPCStatus)
		}
		out.Abort = ab
	}
	if d := f.Spec.Delay; d != nil {
		if dur, err := time.ParseDuration(d.FixedDelay); err == nil && dur > 0 {
			out.Delay = &api.FaultDelay{FixedDelay: durationpb.New(dur), PerMillion: perMillion(d.Percentage)}
		}
	}
	return &api.Filter{Kind: &api.Filter_Fault{Fault: out}}
}

// missingFault is the filter of a reference to an HTTPFault that does not exist:
// Gateway API says a filter that cannot be resolved must not be skipped, and the
// requests it would have processed get an error. Every request is answered 500 (gRPC:
// INTERNAL, a status clients do not retry), until the HTTPFault appears or the
// reference goes.
func missingFault(ns, name string) *api.Filter {
	return &api.Filter{Kind: &api.Filter_Fault{Fault: &api.Fault{Namespace: ns, Name: name,
		Abort: &api.FaultAbort{HttpStatus: 500, GrpcStatus: 13, PerMillion: 1_000_000}}}}
}

// faultFilter is the filter of a reference to the HTTPFault ns/name.
func (c *compilation) faultFilter(ns, name string) *api.Filter {
	if f := c.ix.faults[key(ns, name)]; f != nil {
		return FaultFilter(f)
	}
	return missingFault(ns, name)
}

// httpFaultFilters are the fault filters of a rule's filters, in order.
func (c *compilation) httpFaultFilters(ns string, fs []gatewayv1.HTTPRouteFilter) []*api.Filter {
	var out []*api.Filter
	for _, f := range fs {
		if f.Type == gatewayv1.HTTPRouteFilterExtensionRef && IsFaultRef(f.ExtensionRef) {
			out = append(out, c.faultFilter(ns, string(f.ExtensionRef.Name)))
		}
	}
	return out
}

// grpcFaultFilters are the fault filters of a GRPCRoute rule's filters, in order.
func (c *compilation) grpcFaultFilters(ns string, fs []gatewayv1.GRPCRouteFilter) []*api.Filter {
	var out []*api.Filter
	for _, f := range fs {
		if f.Type == gatewayv1.GRPCRouteFilterExtensionRef && IsFaultRef(f.ExtensionRef) {
			out = append(out, c.faultFilter(ns, string(f.ExtensionRef.Name)))
		}
	}
	return out
}
