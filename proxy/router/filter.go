package router

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/proxy/api"
)

// Filter is one compiled filter; exactly one field is set.
type Filter struct {
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
	Redirect        *api.RequestRedirect
	Rewrite         *api.URLRewrite
	// Fault is applied by the pipeline before the other filters (fault.go).
	Fault *Fault
	// CORS is served by the pipeline around the other filters (cors.go).
	CORS *CORS
}

// HeaderModifier sets, adds and removes headers, in that order, with the names
// canonicalised once at compile time.
type HeaderModifier struct {
	set, add [][2]string
	remove   []string
}

func compileHeaderModifier(h *api.HeaderModifier) *HeaderModifier {
	out := &HeaderModifier{}
	for _, s := range h.GetSet() {
		out.set = append(out.set, [2]string{http.CanonicalHeaderKey(s.GetName()), s.GetValue()})
	}
	for _, a := range h.GetAdd() {
		out.add = append(out.add, [2]string{http.CanonicalHeaderKey(a.GetName()), a.GetValue()})
	}
	for _, r := range h.GetRemove() {
		out.remove = append(out.remove, http.CanonicalHeaderKey(r))
	}
	return out
}

// Apply modifies h.
func (m *HeaderModifier) Apply(h http.Header) {
	for _, s := range m.set {
		h[s[0]] = []string{s[1]}
	}
	for _, a := range m.add {
		h[a[0]] = append(h[a[0]], a[1])
	}
	for _, r := range m.remove {
		delete(h, r)
	}
}

func compileFilters(fs []*api.Filter) []*Filter {
	var out []*Filter
	for _, f := range fs {
		switch k := f.GetKind().(type) {
		case *api.Filter_RequestHeaderModifier:
			out = append(out, &Filter{RequestHeaders: compileHeaderModifier(k.RequestHeaderModifier)})
		case *api.Filter_ResponseHeaderModifier:
			out = append(out, &Filter{ResponseHeaders: compileHeaderModifier(k.ResponseHeaderModifier)})
		case *api.Filter_RequestRedirect:
			out = append(out, &Filter{Redirect: k.RequestRedirect})
		case *api.Filter_UrlRewrite:
			out = append(out, &Filter{Rewrite: k.UrlRewrite})
		case *api.Filter_Fault:
			out = append(out, &Filter{Fault: compileFault(k.Fault)})
		case *api.Filter_Cors:
			out = append(out, &Filter{CORS: compileCORS(k.Cors)})
		}
	}
	return out
}

// Redirect is the answer of a RequestRedirect filter.
type Redirect struct {
	Status   int
	Location string
}

// ApplyRequest applies fs's request filters to r in order (headers, URL rewrite);
// prefix is what the route's path prefix match matched. It returns the redirect to
// answer instead of forwarding, if a redirect filter applies; filters after it do not
// run. scheme is the scheme the client used ("http" for the plaintext outbound side).
func ApplyRequest(fs []*Filter, r *http.Request, prefix, scheme string) *Redirect {
	for _, f := range fs {
		switch {
		case f.RequestHeaders != nil:
			f.RequestHeaders.Apply(r.Header)
		case f.Rewrite != nil:
			if h := f.Rewrite.GetHostname(); h != "" {
				r.Host = h
			}
			if p, ok := modifyPath(f.Rewrite.GetPath(), r.URL.Path, prefix); ok {
				r.URL.Path = p
				r.URL.RawPath = ""
			}
		case f.Redirect != nil:
			return redirect(f.Redirect, r, prefix, scheme)
		}
	}
	return nil
}

// ApplyResponse applies fs's response header modifiers to h.
func ApplyResponse(fs []*Filter, h http.Header) {
	for _, f := range fs {
		if f.ResponseHeaders != nil {
			f.ResponseHeaders.Apply(h)
		}
	}
}

// HasResponseFilters reports whether ApplyResponse would change anything.
func HasResponseFilters(fs []*Filter) bool {
	for _, f := range fs {
		if f.ResponseHeaders != nil {
			return true
		}
	}
	return false
}

// modifyPath applies a PathModifier: a full replacement, or a replacement of the
// matched prefix keeping the rest (Gateway API ReplacePrefixMatch: with prefix /foo,
// /foo/bar rewritten by /baz becomes /baz/bar, by / becomes /bar).
func modifyPath(pm *api.PathModifier, path, prefix string) (string, bool) {
	switch k := pm.GetKind().(type) {
	case *api.PathModifier_ReplaceFullPath:
		return k.ReplaceFullPath, true
	case *api.PathModifier_ReplacePrefixMatch:
		pre := strings.TrimSuffix(prefix, "/")
		if prefix == "" || !strings.HasPrefix(path, pre) {
			return path, false
		}
		rest := path[len(pre):]
		repl := strings.TrimSuffix(k.ReplacePrefixMatch, "/")
		out := repl + rest
		if out == "" || out[0] != '/' {
			out = "/" + strings.TrimPrefix(out, "/")
		}
		return out, true
	}
	return path, false
}

// redirect builds the Location per Gateway API's RequestRedirect: every empty field
// keeps the request's value; a scheme change without a port drops the port (the new
// scheme's default); a port equal to the scheme's default is not written.
func redirect(rr *api.RequestRedirect, r *http.Request, prefix, scheme string) *Redirect {
	// The codes Gateway API allows (the control plane refuses any other rule); an
	// unset one is 302.
	status := int(rr.GetStatusCode())
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		status = http.StatusFound
	}
	newScheme := scheme
	if s := rr.GetScheme(); s != "" {
		newScheme = s
	}
	host, port := r.Host, ""
	if h, p, err := net.SplitHostPort(r.Host); err == nil {
		host, port = h, p
	}
	if h := rr.GetHostname(); h != "" {
		host = h
	}
	switch {
	case rr.GetPort() != 0:
		port = strconv.Itoa(int(rr.GetPort()))
	case newScheme != scheme:
		port = ""
	}
	if (newScheme == "http" && port == "80") || (newScheme == "https" && port == "443") {
		port = ""
	}
	path := r.URL.Path
	if p, ok := modifyPath(rr.GetPath(), path, prefix); ok {
		path = p
	}
	var b strings.Builder
	b.WriteString(newScheme)
	b.WriteString("://")
	if port != "" {
		b.WriteString(net.JoinHostPort(host, port))
	} else if strings.Contains(host, ":") {
		b.WriteString("[" + host + "]")
	} else {
		b.WriteString(host)
	}
	b.WriteString(path)
	if r.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	return &Redirect{Status: status, Location: b.String()}
}
