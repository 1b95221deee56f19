package router

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/weftmesh/weft/proxy/api"
)

// CORS is a compiled Gateway API CORS filter (HTTPCORSFilter). The proxy answers a
// preflight on a route that carries it without forwarding, and adds the CORS response
// headers to the responses of cross-origin requests from an allowed origin. A request
// without an Origin header, or from an origin not allowed, is forwarded as it is and
// its response gets only Vary: Origin: CORS is the browser's protection, enforced by
// the browser from these headers, so the proxy only ever withholds them.
type CORS struct {
	anyOrigin bool
	origins   []originPattern

	anyMethod bool
	methods   string // joined with ", "

	anyHeader bool
	headers   string

	anyExpose bool
	expose    string

	maxAge      string
	credentials bool
}

// originPattern is one allowOrigins entry other than "*": a scheme, a port (the
// scheme's default when the entry names none), and a host that is exact, "*" (any
// host) or "*.<suffix>" (one or more labels before ".<suffix>").
type originPattern struct {
	scheme, port string
	anyHost      bool
	host         string // exact host, or the suffix with its leading dot
	suffix       bool
}

// Gateway API's default for maxAge, in seconds, when the filter leaves it unset.
const defaultCORSMaxAge = 5

// The CORS headers (Fetch standard, "HTTP responses" and "HTTP requests").
const (
	hdrOrigin             = "Origin"
	hdrRequestMethod      = "Access-Control-Request-Method"
	hdrRequestHeaders     = "Access-Control-Request-Headers"
	hdrAllowOrigin        = "Access-Control-Allow-Origin"
	hdrAllowMethods       = "Access-Control-Allow-Methods"
	hdrAllowHeaders       = "Access-Control-Allow-Headers"
	hdrExposeHeaders      = "Access-Control-Expose-Headers"
	hdrMaxAge             = "Access-Control-Max-Age"
	hdrAllowCredentials   = "Access-Control-Allow-Credentials"
	hdrVary               = "Vary"
	corsWildcard          = "*"
	maxCORSRequestHeaders = 4096
)

func compileCORS(c *api.CORS) *CORS {
	out := &CORS{credentials: c.GetAllowCredentials()}
	for _, o := range c.GetAllowOrigins() {
		if o == corsWildcard {
			out.anyOrigin = true
			continue
		}
		if p, ok := parseOriginPattern(o); ok {
			out.origins = append(out.origins, p)
		}
		// An entry the proxy cannot read allows nothing (the control plane refuses
		// such a rule; this is the proxy's own guard).
	}
	out.anyMethod, out.methods = wildcardList(c.GetAllowMethods(), false)
	out.anyHeader, out.headers = wildcardList(c.GetAllowHeaders(), true)
	out.anyExpose, out.expose = wildcardList(c.GetExposeHeaders(), true)
	age := c.GetMaxAgeSeconds()
	if age == 0 {
		age = defaultCORSMaxAge
	}
	out.maxAge = strconv.FormatUint(uint64(age), 10)
	return out
}

// wildcardList says whether vs contains "*" and joins the rest for a response header;
// header names are written in lower case (they are case-insensitive, and HTTP/2 needs
// lower case anyway), methods as given (they are case-sensitive).
func wildcardList(vs []string, lower bool) (bool, string) {
	var names []string
	for _, v := range vs {
		if v == corsWildcard {
			return true, ""
		}
		if !httpguts.ValidHeaderFieldName(v) {
			continue
		}
		if lower {
			v = strings.ToLower(v)
		}
		names = append(names, v)
	}
	return false, strings.Join(names, ", ")
}

// parseOriginPattern reads "<scheme>://<host>[:<port>]" with Gateway API's wildcard
// host forms.
func parseOriginPattern(s string) (originPattern, bool) {
	scheme, host, port, ok := splitSchemeHostPort(s)
	if !ok {
		return originPattern{}, false
	}
	p := originPattern{scheme: scheme, port: port}
	switch {
	case host == corsWildcard:
		p.anyHost = true
	case strings.HasPrefix(host, "*.") && len(host) > 2 && host[2] != '.' && originHost(host[2:]):
		p.host, p.suffix = host[1:], true
	case originHost(host):
		p.host = host
	default:
		return originPattern{}, false
	}
	return p, true
}

// splitOrigin splits an origin (RFC 6454 serialisation, as browsers send it) into its
// lower-cased scheme and host and its port, the scheme's default when absent. Only
// http and https origins are read: "null" and anything else are no origin at all.
func splitOrigin(s string) (scheme, host, port string, ok bool) {
	scheme, host, port, ok = splitSchemeHostPort(s)
	if !ok || !originHost(host) {
		return "", "", "", false
	}
	return scheme, host, port, true
}

// splitSchemeHostPort is splitOrigin without the check of the host's characters, which
// differs between origins and allowOrigins patterns.
func splitSchemeHostPort(s string) (scheme, host, port string, ok bool) {
	scheme, rest, found := strings.Cut(s, "://")
	if !found {
		return "", "", "", false
	}
	scheme = strings.ToLower(scheme)
	switch scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return "", "", "", false
	}
	host = rest
	if strings.HasPrefix(rest, "[") { // an IPv6 literal keeps its colons
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", "", "", false
		}
		host, rest = rest[:end+1], rest[end+1:]
		if rest != "" && rest[0] != ':' {
			return "", "", "", false
		}
		if rest != "" {
			port = rest[1:]
		}
	} else if h, p, found := strings.Cut(rest, ":"); found {
		host, port = h, p
	}
	if host == "" {
		return "", "", "", false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", "", "", false
	}
	return scheme, strings.ToLower(host), strconv.Itoa(n), true
}

// originHost reports whether h is a host as an origin serialises it: DNS labels or an
// IPv4 address (letters, digits, '-', '.'), or a bracketed IPv6 literal. Anything else
// is refused, so an echoed Origin can never carry bytes a header must not.
func originHost(h string) bool {
	if h == "" {
		return false
	}
	allowed := "-."
	if h[0] == '[' {
		if len(h) < 3 || h[len(h)-1] != ']' {
			return false
		}
		h, allowed = h[1:len(h)-1], ":."
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(allowed, c) >= 0) {
			return false
		}
	}
	return true
}

// allowed reports whether the request's Origin header value is allowed.
func (c *CORS) allowed(origin string) bool {
	scheme, host, port, ok := splitOrigin(origin)
	if !ok {
		// "null" (sandboxed documents, file: URLs, redirects across origins) and
		// anything unreadable: only the bare "*" allows it, and only without
		// credentials, where the answer is "*" and no origin is echoed.
		return c.anyOrigin && !c.credentials && origin != ""
	}
	if c.anyOrigin {
		return true
	}
	for i := range c.origins {
		p := &c.origins[i]
		if p.scheme != scheme || p.port != port {
			continue
		}
		switch {
		case p.anyHost:
			return true
		case p.suffix:
			// "*" is greedy to the left: any number of labels, but at least one.
			if len(host) > len(p.host) && strings.HasSuffix(host, p.host) {
				return true
			}
		case host == p.host:
			return true
		}
	}
	return false
}

// allowOrigin writes Access-Control-Allow-Origin: "*" when every origin is allowed
// and credentials are not (a cache may then share the answer across origins), else
// the request's Origin, with Vary: Origin so that caches keep answers apart.
func (c *CORS) allowOrigin(h http.Header, origin string) {
	if c.anyOrigin && !c.credentials {
		h.Set(hdrAllowOrigin, corsWildcard)
		return
	}
	h.Set(hdrAllowOrigin, origin)
	addVary(h, hdrOrigin)
}

func addVary(h http.Header, name string) {
	for _, v := range h.Values(hdrVary) {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f == corsWildcard || strings.EqualFold(f, name) {
				return
			}
		}
	}
	h.Add(hdrVary, name)
}

// IsPreflight reports whether r is a CORS preflight request: OPTIONS with an Origin
// and an Access-Control-Request-Method (Fetch standard, "CORS-preflight request").
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get(hdrOrigin) != "" && r.Header.Get(hdrRequestMethod) != ""
}

// Preflight is the proxy's own answer to a preflight request.
type Preflight struct {
	Status int
	Header http.Header
}

// CORSPreflight answers r when it is a preflight request and fs (a route's filters)
// holds a CORS filter; otherwise it returns nil and the request is routed as usual.
// A preflight from an origin that is not allowed gets 204 without any CORS header,
// which the browser reads as a refusal (Gateway API allows this or a 403).
func CORSPreflight(fs []*Filter, r *http.Request) *Preflight {
	c := corsOf(fs)
	if c == nil || !IsPreflight(r) {
		return nil
	}
	out := &Preflight{Status: http.StatusNoContent, Header: http.Header{}}
	origin := r.Header.Get(hdrOrigin)
	if !c.allowed(origin) {
		return out
	}
	h := out.Header
	c.allowOrigin(h, origin)
	if c.credentials {
		h.Set(hdrAllowCredentials, "true")
	}
	switch {
	case c.anyMethod:
		// Echoing the one method asked for is right with or without credentials
		// (Gateway API: "*" must not be sent with credentials).
		if m := r.Header.Get(hdrRequestMethod); m != corsWildcard && httpguts.ValidHeaderFieldName(m) {
			h.Set(hdrAllowMethods, m)
		}
	case c.methods != "":
		h.Set(hdrAllowMethods, c.methods)
	}
	switch {
	case c.anyHeader:
		// Echo the names asked for, each checked to be a token; without the request
		// header the answer must leave Access-Control-Allow-Headers out.
		if names := requestedHeaders(r.Header.Values(hdrRequestHeaders)); names != "" {
			h.Set(hdrAllowHeaders, names)
		}
	case c.headers != "":
		h.Set(hdrAllowHeaders, c.headers)
	}
	// On a preflight the exposed headers cannot be listed for a wildcard with
	// credentials (there is no response yet): leave them to the actual response.
	c.exposeHeaders(h, nil)
	h.Set(hdrMaxAge, c.maxAge)
	if c.anyMethod || c.anyHeader {
		addVary(h, hdrRequestMethod)
		addVary(h, hdrRequestHeaders)
	}
	return out
}

// requestedHeaders re-joins the header names of Access-Control-Request-Headers,
// dropping any that is not a token; at most maxCORSRequestHeaders bytes are read.
func requestedHeaders(values []string) string {
	var b strings.Builder
	read := 0
	for _, v := range values {
		for _, f := range strings.Split(v, ",") {
			if read += len(f); read > maxCORSRequestHeaders {
				return b.String()
			}
			f = strings.TrimSpace(f)
			if f == corsWildcard || !httpguts.ValidHeaderFieldName(f) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strings.ToLower(f))
		}
	}
	return b.String()
}

// exposeHeaders writes Access-Control-Expose-Headers: the configured names; for a
// wildcard "*" without credentials, else (the Fetch standard reads "*" literally on
// credentialed requests) the names of the response's own headers, when there is a
// response.
func (c *CORS) exposeHeaders(h, resp http.Header) {
	switch {
	case c.anyExpose && !c.credentials:
		h.Set(hdrExposeHeaders, corsWildcard)
	case c.anyExpose:
		names := make([]string, 0, len(resp))
		for k := range resp {
			if !strings.HasPrefix(k, "Access-Control-") && k != hdrVary {
				names = append(names, strings.ToLower(k))
			}
		}
		if len(names) > 0 {
			slices.Sort(names)
			h.Set(hdrExposeHeaders, strings.Join(names, ", "))
		}
	case c.expose != "":
		h.Set(hdrExposeHeaders, c.expose)
	}
}

// CORSResponse is what a CORS filter adds to the response of one actual (not
// preflight) request.
type CORSResponse struct {
	c       *CORS
	origin  string
	allowed bool
}

// CORSFor returns the response headers' writer for r when fs holds a CORS filter; nil
// otherwise.
func CORSFor(fs []*Filter, r *http.Request) *CORSResponse {
	c := corsOf(fs)
	if c == nil {
		return nil
	}
	origin := r.Header.Get(hdrOrigin)
	return &CORSResponse{c: c, origin: origin, allowed: origin != "" && c.allowed(origin)}
}

// Apply sets the CORS headers on a response from an allowed origin; what the
// application set under the same names is replaced, so the route's policy is the one
// the browser sees. Any other response only gets Vary: Origin: on this route the
// answer depends on the Origin, so an HTTP cache must not hand a response made for
// one origin (or for none) to a request from another (Fetch standard, "CORS protocol
// and HTTP caches").
func (a *CORSResponse) Apply(h http.Header) {
	if a == nil {
		return
	}
	if !a.allowed {
		addVary(h, hdrOrigin)
		return
	}
	a.c.allowOrigin(h, a.origin)
	if a.c.credentials {
		h.Set(hdrAllowCredentials, "true")
	}
	a.c.exposeHeaders(h, h)
}

// corsOf returns the first CORS filter of fs (Gateway API allows one per rule).
func corsOf(fs []*Filter) *CORS {
	for _, f := range fs {
		if f.CORS != nil {
			return f.CORS
		}
	}
	return nil
}
