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
	"fmt"
	"regexp"
	"strconv"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/proxy/api"
)

// The HTTPRoute CORS filter (in both CRD channels of v1.6). The CRD's schema checks
// most of this already; the compiler checks it again because the Go types carry
// whatever the API server stored (a CRD installed without these rules, an object
// written before a CRD change), and a rule the proxy would read differently from the
// spec must be refused, not half-applied.

// corsOriginPattern is the CORSOrigin schema pattern of Gateway API v1.6.
var corsOriginPattern = regexp.MustCompile(`(^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$)`)

// headerNamePattern is the HTTPHeaderName schema pattern of Gateway API v1.6.
var headerNamePattern = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")

// corsMethods are the values of HTTPMethodWithWildcard.
var corsMethods = map[gatewayv1.HTTPMethodWithWildcard]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true, "*": true,
}

// The list bounds of HTTPCORSFilter.
const (
	maxCORSOrigins = 64
	maxCORSMethods = 9
	maxCORSHeaders = 64
)

// corsProblem says why a CORS filter cannot be applied, naming the field, or "".
func corsProblem(c *gatewayv1.HTTPCORSFilter) string {
	if c == nil {
		return "filter type CORS needs the cors field"
	}
	if len(c.AllowOrigins) > maxCORSOrigins {
		return fmt.Sprintf("cors.allowOrigins has %d entries; at most %d", len(c.AllowOrigins), maxCORSOrigins)
	}
	for i, o := range c.AllowOrigins {
		if p := corsOriginProblem(string(o)); p != "" {
			return fmt.Sprintf("cors.allowOrigins[%d] %q %s", i, o, p)
		}
		if o == "*" && len(c.AllowOrigins) > 1 {
			return "cors.allowOrigins cannot contain '*' alongside other origins"
		}
	}
	if len(c.AllowMethods) > maxCORSMethods {
		return fmt.Sprintf("cors.allowMethods has %d entries; at most %d", len(c.AllowMethods), maxCORSMethods)
	}
	for i, m := range c.AllowMethods {
		if !corsMethods[m] {
			return fmt.Sprintf("cors.allowMethods[%d] %q is not a method; use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH or *", i, m)
		}
		if m == "*" && len(c.AllowMethods) > 1 {
			return "cors.allowMethods cannot contain '*' alongside other methods"
		}
	}
	for _, l := range []struct {
		field    string
		names    []gatewayv1.HTTPHeaderName
		wildcard bool // "*" must stand alone
	}{{"allowHeaders", c.AllowHeaders, true}, {"exposeHeaders", c.ExposeHeaders, false}} {
		if len(l.names) > maxCORSHeaders {
			return fmt.Sprintf("cors.%s has %d entries; at most %d", l.field, len(l.names), maxCORSHeaders)
		}
		for i, h := range l.names {
			if !headerNamePattern.MatchString(string(h)) {
				return fmt.Sprintf("cors.%s[%d] %q is not a header name", l.field, i, h)
			}
			if l.wildcard && h == "*" && len(l.names) > 1 {
				return fmt.Sprintf("cors.%s cannot contain '*' alongside other headers", l.field)
			}
		}
	}
	if c.MaxAge < 0 {
		return fmt.Sprintf("cors.maxAge %d is negative; use at least 1 (seconds)", c.MaxAge)
	}
	return ""
}

// corsOriginProblem checks one allowOrigins entry against the schema's pattern and
// port range.
func corsOriginProblem(o string) string {
	if len(o) == 0 || len(o) > 253 || !corsOriginPattern.MatchString(o) {
		return `is not "*" or <scheme>://<host>[:<port>] with scheme http or https and "*" only as the whole host or its first label`
	}
	if o == "*" {
		return ""
	}
	rest := o[strings.Index(o, "://")+3:]
	if _, port, ok := strings.Cut(rest, ":"); ok {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "has port " + port + "; use 1-65535"
		}
	}
	return ""
}

// corsFilter compiles a CORS filter that corsProblem accepted.
func corsFilter(c *gatewayv1.HTTPCORSFilter) *api.Filter {
	out := &api.CORS{AllowCredentials: c.AllowCredentials != nil && *c.AllowCredentials}
	for _, o := range c.AllowOrigins {
		out.AllowOrigins = append(out.AllowOrigins, string(o))
	}
	for _, m := range c.AllowMethods {
		out.AllowMethods = append(out.AllowMethods, string(m))
	}
	for _, h := range c.AllowHeaders {
		out.AllowHeaders = append(out.AllowHeaders, string(h))
	}
	for _, h := range c.ExposeHeaders {
		out.ExposeHeaders = append(out.ExposeHeaders, string(h))
	}
	if c.MaxAge > 0 {
		out.MaxAgeSeconds = uint32(c.MaxAge)
	}
	return &api.Filter{Kind: &api.Filter_Cors{Cors: out}}
}

// backendCORSProblem refuses a CORS filter on a backendRef: a preflight is answered
// by the route before any backend is chosen, so a backend's CORS policy could apply
// to some responses and never to the preflight that governs them.
func backendCORSProblem(fs []gatewayv1.HTTPRouteFilter) string {
	for _, f := range fs {
		if f.Type == gatewayv1.HTTPRouteFilterCORS {
			return "filter type CORS is supported in a rule's filters, not a backendRef's; move it to the rule"
		}
	}
	return ""
}
