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
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The checks in this file decide which route references and rules Weft honours. The
// compiler applies them to drop what it cannot use, and the HTTPRoute/GRPCRoute
// reconcilers apply the very same functions to report it in status, so that status
// always says what the proxies do.

// ServiceGetter returns a Service, or nil and no error when it does not exist.
type ServiceGetter func(namespace, name string) (*corev1.Service, error)

// IsServiceParent says whether a parentRef names a core Service (group "" and kind
// Service, both explicit: the API's defaults name a Gateway).
func IsServiceParent(pr gatewayv1.ParentReference) bool {
	return pr.Group != nil && *pr.Group == "" && pr.Kind != nil && *pr.Kind == "Service"
}

// ParentNamespace is the namespace a parentRef points into: its own, or the route's.
func ParentNamespace(routeNamespace string, pr gatewayv1.ParentReference) string {
	if pr.Namespace != nil && *pr.Namespace != "" {
		return string(*pr.Namespace)
	}
	return routeNamespace
}

// portSelected says whether a parentRef's optional port and sectionName select the
// Service port.
func portSelected(pr gatewayv1.ParentReference, port corev1.ServicePort) bool {
	if pr.Port != nil && *pr.Port != port.Port {
		return false
	}
	if pr.SectionName != nil && string(*pr.SectionName) != port.Name {
		return false
	}
	return true
}

// CheckParent resolves a Service parentRef. accepted is false, with reason
// NoMatchingParent and a message, when the Service does not exist or has no port that
// the parentRef's port and sectionName select.
func CheckParent(routeNamespace string, pr gatewayv1.ParentReference, get ServiceGetter) (accepted bool, reason, message string, err error) {
	ns := ParentNamespace(routeNamespace, pr)
	svc, err := get(ns, string(pr.Name))
	if err != nil {
		return false, "", "", fmt.Errorf("getting Service %s/%s: %w", ns, pr.Name, err)
	}
	if svc == nil {
		return false, string(gatewayv1.RouteReasonNoMatchingParent),
			fmt.Sprintf("Service %s/%s does not exist", ns, pr.Name), nil
	}
	for _, p := range svc.Spec.Ports {
		if portSelected(pr, p) {
			return true, string(gatewayv1.RouteReasonAccepted), fmt.Sprintf("Attached to Service %s/%s", ns, pr.Name), nil
		}
	}
	return false, string(gatewayv1.RouteReasonNoMatchingParent),
		fmt.Sprintf("Service %s/%s has no port %s", ns, pr.Name, describeParentPort(pr)), nil
}

func describeParentPort(pr gatewayv1.ParentReference) string {
	switch {
	case pr.Port != nil && pr.SectionName != nil:
		return fmt.Sprintf("%d named %q", *pr.Port, *pr.SectionName)
	case pr.Port != nil:
		return fmt.Sprint(*pr.Port)
	case pr.SectionName != nil:
		return fmt.Sprintf("named %q", *pr.SectionName)
	}
	return "at all"
}

// CheckBackendRef resolves a backendRef. It returns reason "" when the reference is
// usable, else the Gateway API ResolvedRefs reason and a message:
//   - InvalidKind for anything but a core Service;
//   - a Service in another namespace is usable without a ReferenceGrant: mesh routes
//     only add behaviour to calls a client could make anyway (GEP-1294, "Namespace
//     boundaries");
//   - BackendNotFound when the Service does not exist, or the reference has no port
//     or one the Service does not expose.
//
// svc is the Service when reason is "".
func CheckBackendRef(routeNamespace string, ref gatewayv1.BackendObjectReference, get ServiceGetter) (reason, message string, svc *corev1.Service, port corev1.ServicePort, err error) {
	group, kind := "", "Service"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	if group != "" || kind != "Service" {
		gk := kind
		if group != "" {
			gk = kind + "." + group
		}
		return string(gatewayv1.RouteReasonInvalidKind),
			fmt.Sprintf("backendRef %s names a %s; only core Services are supported", ref.Name, gk), nil, port, nil
	}
	ns := routeNamespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	svc, err = get(ns, string(ref.Name))
	if err != nil {
		return "", "", nil, port, fmt.Errorf("getting Service %s/%s: %w", ns, ref.Name, err)
	}
	if svc == nil {
		return string(gatewayv1.RouteReasonBackendNotFound),
			fmt.Sprintf("Service %s/%s does not exist", ns, ref.Name), nil, port, nil
	}
	if ref.Port == nil {
		return string(gatewayv1.RouteReasonBackendNotFound),
			fmt.Sprintf("backendRef %s/%s sets no port", ns, ref.Name), nil, port, nil
	}
	for _, p := range svc.Spec.Ports {
		if p.Port == *ref.Port {
			return "", "", svc, p, nil
		}
	}
	return string(gatewayv1.RouteReasonBackendNotFound),
		fmt.Sprintf("Service %s/%s has no port %d", ns, ref.Name, *ref.Port), nil, port, nil
}

// HTTPRuleProblem says why Weft cannot implement an HTTPRoute rule, or "" when it
// can. Such rules are dropped (Gateway API's "Drop Rule" approach to partially invalid
// routes).
func HTTPRuleProblem(rule gatewayv1.HTTPRouteRule) string {
	for _, m := range rule.Matches {
		if m.Path != nil && m.Path.Type != nil && *m.Path.Type == gatewayv1.PathMatchRegularExpression && m.Path.Value != nil {
			if _, err := regexp.Compile(*m.Path.Value); err != nil {
				return fmt.Sprintf("path regular expression %q does not compile: %v", *m.Path.Value, err)
			}
		}
		for _, h := range m.Headers {
			if h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression {
				if _, err := regexp.Compile(h.Value); err != nil {
					return fmt.Sprintf("header %s regular expression %q does not compile: %v", h.Name, h.Value, err)
				}
			}
		}
		for _, q := range m.QueryParams {
			if q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression {
				if _, err := regexp.Compile(q.Value); err != nil {
					return fmt.Sprintf("query parameter %s regular expression %q does not compile: %v", q.Name, q.Value, err)
				}
			}
		}
	}
	if p := httpFiltersProblem(rule.Filters, true); p != "" {
		return p
	}
	for _, b := range rule.BackendRefs {
		if p := cmp.Or(backendCORSProblem(b.Filters), httpFiltersProblem(b.Filters, false)); p != "" {
			return "backendRef " + string(b.Name) + ": " + p
		}
	}
	if rule.Timeouts != nil {
		for _, d := range []*gatewayv1.Duration{rule.Timeouts.Request, rule.Timeouts.BackendRequest} {
			if d != nil {
				if _, err := time.ParseDuration(string(*d)); err != nil {
					return fmt.Sprintf("timeout %q is not a duration", *d)
				}
			}
		}
	}
	if rule.Retry != nil && rule.Retry.Backoff != nil {
		if _, err := time.ParseDuration(string(*rule.Retry.Backoff)); err != nil {
			return fmt.Sprintf("retry backoff %q is not a duration", *rule.Retry.Backoff)
		}
	}
	if rule.SessionPersistence != nil {
		return errSessionPersistence
	}
	return ""
}

// errSessionPersistence refuses a rule that asks for session persistence (an
// experimental field): Weft's balancer picks per request by latency and cannot pin a
// session, and ignoring the field would silently break what the rule promises.
const errSessionPersistence = "sessionPersistence is not supported: Weft balances each request; remove the field"

// redirectCodes are the RequestRedirect status codes the proxy answers with.
var redirectCodes = []int{301, 302, 303, 307, 308}

// httpFiltersProblem says why Weft cannot apply a list of filters; rule says they are
// a rule's (an HTTPFault applies to a rule, not to one of its backends).
func httpFiltersProblem(fs []gatewayv1.HTTPRouteFilter, rule bool) string {
	for i, f := range fs {
		if f.Type == gatewayv1.HTTPRouteFilterExtensionRef {
			if p := extensionRefProblem(f.ExtensionRef, rule); p != "" {
				return p
			}
			continue
		}
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			// Gateway API: an unknown status code must leave the rule unaccepted,
			// not be answered with another code.
			if rr := f.RequestRedirect; rr != nil && rr.StatusCode != nil && !slices.Contains(redirectCodes, *rr.StatusCode) {
				return fmt.Sprintf("redirect statusCode %d is not supported; use 301, 302, 303, 307 or 308", *rr.StatusCode)
			}
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier, gatewayv1.HTTPRouteFilterResponseHeaderModifier,
			gatewayv1.HTTPRouteFilterURLRewrite, gatewayv1.HTTPRouteFilterRequestMirror:
		case gatewayv1.HTTPRouteFilterCORS:
			if p := corsProblem(f.CORS); p != "" {
				return p
			}
			if slices.IndexFunc(fs, func(g gatewayv1.HTTPRouteFilter) bool { return g.Type == gatewayv1.HTTPRouteFilterCORS }) != i {
				return "filter type CORS is repeated; a rule takes one"
			}
		default:
			return fmt.Sprintf("filter type %s is not supported", f.Type)
		}
	}
	return ""
}

// GRPCRuleProblem says why Weft cannot implement a GRPCRoute rule, or "" when it can.
func GRPCRuleProblem(rule gatewayv1.GRPCRouteRule) string {
	for _, m := range rule.Matches {
		if m.Method != nil && m.Method.Type != nil && *m.Method.Type == gatewayv1.GRPCMethodMatchRegularExpression {
			for _, v := range []*string{m.Method.Service, m.Method.Method} {
				if v != nil {
					if _, err := regexp.Compile(*v); err != nil {
						return fmt.Sprintf("method regular expression %q does not compile: %v", *v, err)
					}
				}
			}
		}
		for _, h := range m.Headers {
			if h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression {
				if _, err := regexp.Compile(h.Value); err != nil {
					return fmt.Sprintf("header %s regular expression %q does not compile: %v", h.Name, h.Value, err)
				}
			}
		}
	}
	if p := grpcFiltersProblem(rule.Filters, true); p != "" {
		return p
	}
	for _, b := range rule.BackendRefs {
		if p := grpcFiltersProblem(b.Filters, false); p != "" {
			return "backendRef " + string(b.Name) + ": " + p
		}
	}
	if rule.SessionPersistence != nil {
		return errSessionPersistence
	}
	return ""
}

func grpcFiltersProblem(fs []gatewayv1.GRPCRouteFilter, rule bool) string {
	for _, f := range fs {
		if f.Type == gatewayv1.GRPCRouteFilterExtensionRef {
			if p := extensionRefProblem(f.ExtensionRef, rule); p != "" {
				return p
			}
			continue
		}
		switch f.Type {
		case gatewayv1.GRPCRouteFilterRequestHeaderModifier, gatewayv1.GRPCRouteFilterResponseHeaderModifier,
			gatewayv1.GRPCRouteFilterRequestMirror:
		default:
			return fmt.Sprintf("filter type %s is not supported", f.Type)
		}
	}
	return ""
}

// extensionRefProblem says why Weft cannot apply an ExtensionRef filter: the one
// extension it knows is an HTTPFault (group mesh.weft.dev), on a rule.
func extensionRefProblem(ref *gatewayv1.LocalObjectReference, rule bool) string {
	switch {
	case !IsFaultRef(ref):
		return "filter type ExtensionRef is not supported"
	case !rule:
		return "an HTTPFault ExtensionRef filter applies to a rule, not to a backendRef; move it to the rule's filters"
	}
	return ""
}
