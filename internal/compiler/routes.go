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
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/validation"
	"github.com/weftmesh/weft/proxy/api"
)

// entry is one compiled (rule, match) pair with the keys that order it. The proxy
// takes the first route that matches, so the compiler flattens every rule's matches
// and sorts them by Gateway API's precedence.
type entry struct {
	route *api.Route
	MatchRank
	// The route's age, namespace/name, rule index and match index break ties.
	created        metav1.Time
	name           string
	rule, matchIdx int
}

// MatchRank is how specific one compiled route match is, by Gateway API's precedence
// rules: the inbound policy compiler orders the routes attached to a Server with it too,
// so both sides of a request choose routes the same way.
type MatchRank struct {
	grpc bool
	// HTTP: path kind (3 exact, 2 regex, 1 prefix), path length, method set, header
	// and query counts. gRPC: service and method lengths, header count.
	pathKind, pathLen, method, headers, queries int
}

// CompareMatchRank orders a before b (-1) when a is the more specific match. Ties are
// for the caller to break (the route's age, then its namespace/name, rule and match
// indexes).
func CompareMatchRank(a, b MatchRank) int {
	// gRPC rules first: they only match gRPC requests, so they cannot shadow an HTTP
	// rule meant for other traffic.
	if a.grpc != b.grpc {
		if a.grpc {
			return -1
		}
		return 1
	}
	for _, d := range [][2]int{{a.pathKind, b.pathKind}, {a.pathLen, b.pathLen}, {a.method, b.method}, {a.headers, b.headers}, {a.queries, b.queries}} {
		if c := cmp.Compare(d[1], d[0]); c != 0 { // more specific first
			return c
		}
	}
	return 0
}

func compareEntries(a, b entry) int {
	if c := CompareMatchRank(a.MatchRank, b.MatchRank); c != 0 {
		return c
	}
	if !a.created.Equal(&b.created) {
		if a.created.Before(&b.created) {
			return -1
		}
		return 1
	}
	return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(a.rule, b.rule), cmp.Compare(a.matchIdx, b.matchIdx))
}

// attaches says whether a route's parentRefs select the compilation's Service port.
func (c *compilation) attaches(routeNS string, refs []gatewayv1.ParentReference) bool {
	for _, pr := range refs {
		if IsServiceParent(pr) && ParentNamespace(routeNS, pr) == c.svc.Namespace &&
			string(pr.Name) == c.svc.Name && portSelected(pr, c.port) {
			return true
		}
	}
	return false
}

// routeScope decides which namespaces' routes apply: consumer routes (in the client's
// namespace) replace producer routes (in the Service's) for that client, as GAMMA
// specifies; routes in any other namespace never apply.
func (c *compilation) routeScope() string {
	ctx := c.target.ContextNamespace
	if ctx == "" || ctx == c.svc.Namespace {
		return c.svc.Namespace
	}
	for _, r := range c.ix.httpRoutes[ctx] {
		if c.attaches(r.Namespace, r.Spec.ParentRefs) {
			return ctx
		}
	}
	for _, r := range c.ix.grpcRoutes[ctx] {
		if c.attaches(r.Namespace, r.Spec.ParentRefs) {
			return ctx
		}
	}
	return c.svc.Namespace
}

func (c *compilation) gatewayRoutes() []*api.Route {
	scope := c.routeScope()
	var entries []entry
	for _, r := range c.ix.httpRoutes[scope] {
		if !c.attaches(r.Namespace, r.Spec.ParentRefs) {
			continue
		}
		for ri, rule := range r.Spec.Rules {
			if HTTPRuleProblem(rule) != "" {
				continue
			}
			entries = append(entries, c.httpRule(r, ri, rule)...)
		}
	}
	for _, r := range c.ix.grpcRoutes[scope] {
		if !c.attaches(r.Namespace, r.Spec.ParentRefs) {
			continue
		}
		for ri, rule := range r.Spec.Rules {
			if GRPCRuleProblem(rule) != "" {
				continue
			}
			entries = append(entries, c.grpcRule(r, ri, rule)...)
		}
	}
	slices.SortStableFunc(entries, compareEntries)
	out := make([]*api.Route, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.route)
	}
	return out
}

func ruleName(name *gatewayv1.SectionName, i int) string {
	if name != nil && *name != "" {
		return string(*name)
	}
	return strconv.Itoa(i)
}

// RouteName is the name a route rule has on the wire (destination routes and inbound
// policy routes alike): "<route>/<rule name>", or "<route>/rule-<index>" for a rule
// without a name.
func RouteName(obj string, name *gatewayv1.SectionName, i int) string {
	return routeName(obj, name, i)
}

func routeName(obj string, name *gatewayv1.SectionName, i int) string {
	if name != nil && *name != "" {
		return obj + "/" + string(*name)
	}
	return fmt.Sprintf("%s/rule-%d", obj, i)
}

func (c *compilation) httpRule(r *gatewayv1.HTTPRoute, ri int, rule gatewayv1.HTTPRouteRule) []entry {
	filters := append(c.httpFaultFilters(r.Namespace, rule.Filters), httpFilters(rule.Filters)...)
	filters = append(filters, c.httpMirrorFilters(r.Namespace, rule.Filters)...)
	redirect := slices.ContainsFunc(rule.Filters, func(f gatewayv1.HTTPRouteFilter) bool {
		return f.Type == gatewayv1.HTTPRouteFilterRequestRedirect
	})
	var backends []*api.WeightedBackend
	switch {
	case redirect:
		// A redirect answers the request itself; backends would never be used.
	case len(rule.BackendRefs) == 0:
		backends = c.defaultBackends()
	default:
		for _, br := range rule.BackendRefs {
			wb := c.routeBackend(r.Namespace, br.BackendObjectReference, br.Weight)
			wb.Filters = append(httpFilters(br.Filters), c.httpMirrorFilters(r.Namespace, br.Filters)...)
			backends = append(backends, wb)
		}
	}
	var timeouts *api.Timeouts
	if t := rule.Timeouts; t != nil {
		timeouts = &api.Timeouts{Request: gatewayDuration(t.Request), BackendRequest: gatewayDuration(t.BackendRequest)}
	}
	ra := c.routeAnnotations(validation.KindHTTPRoute, r.Annotations)
	timeouts = ra.timeouts(timeouts)
	var retry *api.RetryPolicy
	if rt := rule.Retry; rt != nil && (rt.Attempts == nil || *rt.Attempts > 0) {
		retry = &api.RetryPolicy{Backoff: gatewayDuration(rt.Backoff)}
		for _, code := range rt.Codes {
			retry.Statuses = append(retry.Statuses, &api.StatusRange{Min: uint32(code), Max: uint32(code)})
		}
		if rt.Attempts != nil {
			// Gateway API counts retries; the wire model counts attempts.
			retry.MaxAttempts = uint32(*rt.Attempts) + 1
		}
	}
	retry = ra.retryPolicy(validation.KindHTTPRoute, retry)
	matches := rule.Matches
	if len(matches) == 0 {
		// The API defaults an empty match list to one PathPrefix "/" match.
		matches = []gatewayv1.HTTPRouteMatch{{}}
	}
	out := make([]entry, 0, len(matches))
	for mi, m := range matches {
		rm, rank := HTTPMatch(m)
		e := entry{MatchRank: rank, created: r.CreationTimestamp, name: key(r.Namespace, r.Name), rule: ri, matchIdx: mi}
		e.route = &api.Route{
			Name:     routeName(r.Name, rule.Name, ri),
			Resource: &api.ResourceRef{Kind: "HTTPRoute", Namespace: r.Namespace, Name: r.Name, Rule: ruleName(rule.Name, ri)},
			Matches:  []*api.RouteMatch{rm},
			Filters:  filters,
			Backends: backends,
			Timeouts: timeouts,
			Retry:    retry,
		}
		out = append(out, e)
	}
	return out
}

func (c *compilation) grpcRule(r *gatewayv1.GRPCRoute, ri int, rule gatewayv1.GRPCRouteRule) []entry {
	filters := append(c.grpcFaultFilters(r.Namespace, rule.Filters), grpcFilters(rule.Filters)...)
	filters = append(filters, c.grpcMirrorFilters(r.Namespace, rule.Filters)...)
	var backends []*api.WeightedBackend
	if len(rule.BackendRefs) == 0 {
		backends = c.defaultBackends()
	}
	for _, br := range rule.BackendRefs {
		wb := c.routeBackend(r.Namespace, br.BackendObjectReference, br.Weight)
		wb.Filters = append(grpcFilters(br.Filters), c.grpcMirrorFilters(r.Namespace, br.Filters)...)
		backends = append(backends, wb)
	}
	// GRPCRoute (v1.6, standard and experimental) has no timeouts or retry
	// fields: the annotations are its only source.
	ra := c.routeAnnotations(validation.KindGRPCRoute, r.Annotations)
	timeouts := ra.timeouts(nil)
	retry := ra.retryPolicy(validation.KindGRPCRoute, nil)
	matches := rule.Matches
	if len(matches) == 0 {
		matches = []gatewayv1.GRPCRouteMatch{{}}
	}
	out := make([]entry, 0, len(matches))
	for mi, m := range matches {
		rm, rank := GRPCMatch(m)
		e := entry{MatchRank: rank, created: r.CreationTimestamp, name: key(r.Namespace, r.Name), rule: ri, matchIdx: mi}
		e.route = &api.Route{
			Name:     routeName(r.Name, rule.Name, ri),
			Resource: &api.ResourceRef{Kind: "GRPCRoute", Namespace: r.Namespace, Name: r.Name, Rule: ruleName(rule.Name, ri)},
			Matches:  []*api.RouteMatch{rm},
			Filters:  filters,
			Backends: backends,
			Timeouts: timeouts,
			Retry:    retry,
		}
		out = append(out, e)
	}
	return out
}

// HTTPMatch compiles one HTTPRoute match and ranks it. A match without a path is
// PathPrefix "/", as the API defaults it (a rule without matches is one such match).
func HTTPMatch(m gatewayv1.HTTPRouteMatch) (*api.RouteMatch, MatchRank) {
	rm := &api.RouteMatch{}
	var rank MatchRank
	pathType, pathValue := gatewayv1.PathMatchPathPrefix, "/"
	if m.Path != nil {
		if m.Path.Type != nil {
			pathType = *m.Path.Type
		}
		if m.Path.Value != nil {
			pathValue = *m.Path.Value
		}
	}
	switch pathType {
	case gatewayv1.PathMatchExact:
		rm.Path = &api.StringMatch{Kind: &api.StringMatch_Exact{Exact: pathValue}}
		rank.pathKind = 3
	case gatewayv1.PathMatchRegularExpression:
		rm.Path = &api.StringMatch{Kind: &api.StringMatch_Regex{Regex: pathValue}}
		rank.pathKind = 2
	default:
		rm.Path = &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: pathValue}}
		rank.pathKind = 1
	}
	rank.pathLen = len(pathValue)
	if m.Method != nil {
		rm.Method = string(*m.Method)
		rank.method = 1
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, &api.HeaderMatch{Name: string(h.Name),
			Value: stringMatch(h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression, h.Value)})
	}
	for _, q := range m.QueryParams {
		rm.QueryParams = append(rm.QueryParams, &api.HeaderMatch{Name: string(q.Name),
			Value: stringMatch(q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression, q.Value)})
	}
	rank.headers, rank.queries = len(m.Headers), len(m.QueryParams)
	return rm, rank
}

// GRPCMatch compiles one GRPCRoute match and ranks it.
func GRPCMatch(m gatewayv1.GRPCRouteMatch) (*api.RouteMatch, MatchRank) {
	gm := &api.GRPCMethodMatch{}
	rank := MatchRank{grpc: true}
	if mm := m.Method; mm != nil {
		regex := mm.Type != nil && *mm.Type == gatewayv1.GRPCMethodMatchRegularExpression
		if mm.Service != nil {
			gm.Service = stringMatch(regex, *mm.Service)
			rank.pathLen = len(*mm.Service)
		}
		if mm.Method != nil {
			gm.Method = stringMatch(regex, *mm.Method)
			rank.method = len(*mm.Method)
		}
	}
	rm := &api.RouteMatch{Grpc: gm}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, &api.HeaderMatch{Name: string(h.Name),
			Value: stringMatch(h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression, h.Value)})
	}
	rank.headers = len(m.Headers)
	return rm, rank
}

// routeBackend resolves a backendRef; an unusable one keeps its weight and says why,
// so the proxy answers its share with 500.
func (c *compilation) routeBackend(routeNS string, ref gatewayv1.BackendObjectReference, weight *int32) *api.WeightedBackend {
	w := uint32(1)
	if weight != nil {
		w = uint32(max(*weight, 0))
	}
	reason, msg, svc, port, _ := CheckBackendRef(routeNS, ref, c.ix.getService)
	if reason != "" {
		return &api.WeightedBackend{Weight: w, Invalid: reason + ": " + msg}
	}
	return &api.WeightedBackend{Backend: c.backend(svc, port).Key, Weight: w}
}

func stringMatch(regex bool, v string) *api.StringMatch {
	if regex {
		return &api.StringMatch{Kind: &api.StringMatch_Regex{Regex: v}}
	}
	return &api.StringMatch{Kind: &api.StringMatch_Exact{Exact: v}}
}

// gatewayDuration converts a Gateway API duration; HTTPRuleProblem has rejected the
// rule already when one does not parse.
func gatewayDuration(d *gatewayv1.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil {
		return nil
	}
	return durationpb.New(v)
}

func headerModifier(h *gatewayv1.HTTPHeaderFilter) *api.HeaderModifier {
	out := &api.HeaderModifier{Remove: slices.Clone(h.Remove)}
	for _, s := range h.Set {
		out.Set = append(out.Set, &api.Header{Name: string(s.Name), Value: s.Value})
	}
	for _, a := range h.Add {
		out.Add = append(out.Add, &api.Header{Name: string(a.Name), Value: a.Value})
	}
	return out
}

func pathModifier(p *gatewayv1.HTTPPathModifier) *api.PathModifier {
	if p == nil {
		return nil
	}
	switch {
	case p.Type == gatewayv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
		return &api.PathModifier{Kind: &api.PathModifier_ReplaceFullPath{ReplaceFullPath: *p.ReplaceFullPath}}
	case p.Type == gatewayv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
		return &api.PathModifier{Kind: &api.PathModifier_ReplacePrefixMatch{ReplacePrefixMatch: *p.ReplacePrefixMatch}}
	}
	return nil
}

func httpFilters(fs []gatewayv1.HTTPRouteFilter) []*api.Filter {
	var out []*api.Filter
	for _, f := range fs {
		switch {
		case f.Type == gatewayv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
			out = append(out, &api.Filter{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: headerModifier(f.RequestHeaderModifier)}})
		case f.Type == gatewayv1.HTTPRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
			out = append(out, &api.Filter{Kind: &api.Filter_ResponseHeaderModifier{ResponseHeaderModifier: headerModifier(f.ResponseHeaderModifier)}})
		case f.Type == gatewayv1.HTTPRouteFilterRequestRedirect && f.RequestRedirect != nil:
			rr := f.RequestRedirect
			red := &api.RequestRedirect{Path: pathModifier(rr.Path), StatusCode: 302}
			if rr.Scheme != nil {
				red.Scheme = *rr.Scheme
			}
			if rr.Hostname != nil {
				red.Hostname = string(*rr.Hostname)
			}
			if rr.Port != nil {
				red.Port = uint32(*rr.Port)
			}
			if rr.StatusCode != nil {
				red.StatusCode = uint32(*rr.StatusCode)
			}
			out = append(out, &api.Filter{Kind: &api.Filter_RequestRedirect{RequestRedirect: red}})
		case f.Type == gatewayv1.HTTPRouteFilterURLRewrite && f.URLRewrite != nil:
			rw := &api.URLRewrite{Path: pathModifier(f.URLRewrite.Path)}
			if f.URLRewrite.Hostname != nil {
				rw.Hostname = string(*f.URLRewrite.Hostname)
			}
			out = append(out, &api.Filter{Kind: &api.Filter_UrlRewrite{UrlRewrite: rw}})
		case f.Type == gatewayv1.HTTPRouteFilterCORS && f.CORS != nil:
			out = append(out, corsFilter(f.CORS))
		}
	}
	return out
}

func grpcFilters(fs []gatewayv1.GRPCRouteFilter) []*api.Filter {
	var out []*api.Filter
	for _, f := range fs {
		switch {
		case f.Type == gatewayv1.GRPCRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
			out = append(out, &api.Filter{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: headerModifier(f.RequestHeaderModifier)}})
		case f.Type == gatewayv1.GRPCRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
			out = append(out, &api.Filter{Kind: &api.Filter_ResponseHeaderModifier{ResponseHeaderModifier: headerModifier(f.ResponseHeaderModifier)}})
		}
	}
	return out
}

// profileRoutes compiles the ServiceProfile's routes, in order, each to the default
// backends. The profile passed validation (profileFor), so its conditions are within
// bounds; a condition that is not anyway (a caller that skipped validation) drops its
// route rather than the compiler walking it.
func (c *compilation) profileRoutes() []*api.Route {
	sp := c.profile
	out := make([]*api.Route, 0, len(sp.Spec.Routes))
	for _, rt := range sp.Spec.Routes {
		timeout := DefaultProfileRouteTimeout
		if rt.Timeout != "" {
			if d, err := time.ParseDuration(rt.Timeout); err == nil {
				timeout = d
			}
		}
		cond, err := requestCondition(&rt.Condition, 1)
		if err != nil {
			continue
		}
		r := &api.Route{
			Name:     rt.Name,
			Resource: &api.ResourceRef{Kind: "ServiceProfile", Namespace: sp.Namespace, Name: sp.Name},
			Matches:  []*api.RouteMatch{{Condition: cond}},
			Backends: c.defaultBackends(),
			Timeouts: &api.Timeouts{Request: durationpb.New(timeout)},
		}
		if rt.Fault != "" {
			r.Filters = append(r.Filters, c.faultFilter(sp.Namespace, rt.Fault))
		}
		if rt.IsRetryable {
			// No statuses: retry what the response classes call failures.
			r.Retry = &api.RetryPolicy{}
		}
		for _, rc := range rt.ResponseClasses {
			rcond, err := responseCondition(&rc.Condition, 1)
			if err != nil {
				continue
			}
			r.ResponseClasses = append(r.ResponseClasses, &api.ResponseClass{Condition: rcond, IsFailure: rc.IsFailure})
		}
		out = append(out, r)
	}
	return out
}

// errConditionTooDeep stops a conversion at meshv1alpha1.MaxConditionDepth levels, so
// the recursion is bounded by the constant, not by what was stored.
var errConditionTooDeep = fmt.Errorf("conditions nest deeper than %d levels", meshv1alpha1.MaxConditionDepth)

// errEmptyCondition: a condition that tests nothing would compile to an empty all,
// which matches every request; validation refuses it, and so does the compiler.
var errEmptyCondition = errors.New("a condition tests nothing")

// requestCondition converts a ServiceProfile request condition at the given level
// (the route's condition is level 1). A level that sets several tests requires all
// of them, as in Linkerd.
func requestCondition(m *meshv1alpha1.RequestMatch, depth int) (*api.RequestCondition, error) {
	if depth > meshv1alpha1.MaxConditionDepth {
		return nil, errConditionTooDeep
	}
	var parts []*api.RequestCondition
	list := func(ms []meshv1alpha1.RequestMatch) (*api.RequestConditions, error) {
		out := &api.RequestConditions{Conditions: make([]*api.RequestCondition, 0, len(ms))}
		for i := range ms {
			c, err := requestCondition(&ms[i], depth+1)
			if err != nil {
				return nil, err
			}
			out.Conditions = append(out.Conditions, c)
		}
		return out, nil
	}
	if len(m.All) > 0 {
		l, err := list(m.All)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &api.RequestCondition{Kind: &api.RequestCondition_All{All: l}})
	}
	if len(m.Any) > 0 {
		l, err := list(m.Any)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &api.RequestCondition{Kind: &api.RequestCondition_Any{Any: l}})
	}
	if m.Not != nil {
		n, err := requestCondition(m.Not, depth+1)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &api.RequestCondition{Kind: &api.RequestCondition_Not{Not: n}})
	}
	if m.PathRegex != "" {
		parts = append(parts, &api.RequestCondition{Kind: &api.RequestCondition_PathRegex{PathRegex: m.PathRegex}})
	}
	if m.Method != "" {
		// Linkerd compares methods upper-cased; a profile written with "get" means GET.
		parts = append(parts, &api.RequestCondition{Kind: &api.RequestCondition_Method{Method: strings.ToUpper(m.Method)}})
	}
	switch len(parts) {
	case 0:
		return nil, errEmptyCondition
	case 1:
		return parts[0], nil
	}
	return &api.RequestCondition{Kind: &api.RequestCondition_All{All: &api.RequestConditions{Conditions: parts}}}, nil
}

// responseCondition converts a ServiceProfile response condition like
// requestCondition. A status range with one bound matches just that status, as
// Linkerd documents.
func responseCondition(m *meshv1alpha1.ResponseMatch, depth int) (*api.ResponseCondition, error) {
	if depth > meshv1alpha1.MaxConditionDepth {
		return nil, errConditionTooDeep
	}
	var parts []*api.ResponseCondition
	list := func(ms []meshv1alpha1.ResponseMatch) (*api.ResponseConditions, error) {
		out := &api.ResponseConditions{Conditions: make([]*api.ResponseCondition, 0, len(ms))}
		for i := range ms {
			c, err := responseCondition(&ms[i], depth+1)
			if err != nil {
				return nil, err
			}
			out.Conditions = append(out.Conditions, c)
		}
		return out, nil
	}
	if len(m.All) > 0 {
		l, err := list(m.All)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &api.ResponseCondition{Kind: &api.ResponseCondition_All{All: l}})
	}
	if len(m.Any) > 0 {
		l, err := list(m.Any)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &api.ResponseCondition{Kind: &api.ResponseCondition_Any{Any: l}})
	}
	if m.Not != nil {
		n, err := responseCondition(m.Not, depth+1)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &api.ResponseCondition{Kind: &api.ResponseCondition_Not{Not: n}})
	}
	if s := m.Status; s != nil && (s.Min != nil || s.Max != nil) {
		lo, hi := s.Min, s.Max
		if lo == nil {
			lo = hi
		}
		if hi == nil {
			hi = lo
		}
		parts = append(parts, &api.ResponseCondition{Kind: &api.ResponseCondition_Status{Status: &api.StatusRange{Min: uint32(*lo), Max: uint32(*hi)}}})
	}
	switch len(parts) {
	case 0:
		return nil, errEmptyCondition
	case 1:
		return parts[0], nil
	}
	return &api.ResponseCondition{Kind: &api.ResponseCondition_All{All: &api.ResponseConditions{Conditions: parts}}}, nil
}
