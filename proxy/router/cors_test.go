package router

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/weftmesh/weft/proxy/api"
)

func corsFilters(c *api.CORS) []*Filter {
	return compileFilters([]*api.Filter{{Kind: &api.Filter_Cors{Cors: c}}})
}

func corsReq(method string, h map[string]string) *http.Request {
	r := httptest.NewRequest(method, "http://svc/cors", nil)
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return r
}

// The routes of Gateway API v1.6.3's HTTPRouteCORS conformance test
// (tests/httproute-cors.yaml), which the suite runs against Gateways only: the mesh
// proxy is held to the same answers here.
var (
	corsMultiple = &api.CORS{
		AllowOrigins:     []string{"https://www.foo.com", "https://*.bar.com"},
		AllowMethods:     []string{"GET", "OPTIONS"},
		AllowHeaders:     []string{"x-header-1", "x-header-2"},
		ExposeHeaders:    []string{"x-header-3", "x-header-4"},
		AllowCredentials: true,
		MaxAgeSeconds:    3600,
	}
	corsWildcardMethods   = &api.CORS{AllowOrigins: []string{"https://www.foo.com"}, AllowMethods: []string{"*"}}
	corsWildcardOrigin    = &api.CORS{AllowOrigins: []string{"*"}, AllowMethods: []string{"PUT"}}
	corsAllWildcardsCreds = &api.CORS{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"}, AllowCredentials: true}
	corsAllWildcards      = &api.CORS{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"}}
)

func TestCORSPreflight(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cors   *api.CORS
		header map[string]string
		want   map[string]string // "" means the header must be absent
	}{{
		name:   "exact origin: every configured list, max age and credentials",
		cors:   corsMultiple,
		header: map[string]string{"Origin": "https://www.foo.com", hdrRequestMethod: "GET", hdrRequestHeaders: "x-header-1, x-header-2"},
		want: map[string]string{hdrAllowOrigin: "https://www.foo.com", hdrAllowMethods: "GET, OPTIONS", hdrAllowHeaders: "x-header-1, x-header-2",
			hdrExposeHeaders: "x-header-3, x-header-4", hdrMaxAge: "3600", hdrAllowCredentials: "true", hdrVary: "Origin"},
	}, {
		name:   "wildcard origin label",
		cors:   corsMultiple,
		header: map[string]string{"Origin": "https://www.bar.com", hdrRequestMethod: "GET"},
		want:   map[string]string{hdrAllowOrigin: "https://www.bar.com", hdrAllowCredentials: "true"},
	}, {
		name:   "the wildcard takes any number of labels",
		cors:   corsMultiple,
		header: map[string]string{"Origin": "https://xpto.www.bar.com", hdrRequestMethod: "GET"},
		want:   map[string]string{hdrAllowOrigin: "https://xpto.www.bar.com"},
	}, {
		name:   "the wildcard needs at least one label",
		cors:   corsMultiple,
		header: map[string]string{"Origin": "https://bar.com", hdrRequestMethod: "GET"},
		want:   map[string]string{hdrAllowOrigin: "", hdrAllowMethods: "", hdrMaxAge: "", hdrAllowCredentials: ""},
	}, {
		name:   "a host that merely ends like an allowed one is another origin",
		cors:   corsMultiple,
		header: map[string]string{"Origin": "https://foobar.com", hdrRequestMethod: "GET"},
		want:   map[string]string{hdrAllowOrigin: "", hdrAllowMethods: "", hdrAllowHeaders: "", hdrExposeHeaders: "", hdrAllowCredentials: ""},
	}, {
		name:   "another scheme is another origin",
		cors:   corsMultiple,
		header: map[string]string{"Origin": "http://www.foo.com", hdrRequestMethod: "GET"},
		want:   map[string]string{hdrAllowOrigin: ""},
	}, {
		name:   "the scheme's default port written out is the same origin",
		cors:   corsMultiple,
		header: map[string]string{"Origin": "https://www.foo.com:443", hdrRequestMethod: "GET"},
		want:   map[string]string{hdrAllowOrigin: "https://www.foo.com:443"},
	}, {
		name:   "another port is another origin",
		cors:   corsMultiple,
		header: map[string]string{"Origin": "https://www.foo.com:8443", hdrRequestMethod: "GET"},
		want:   map[string]string{hdrAllowOrigin: ""},
	}, {
		name:   "the null origin is never echoed",
		cors:   corsMultiple,
		header: map[string]string{"Origin": "null", hdrRequestMethod: "GET"},
		want:   map[string]string{hdrAllowOrigin: ""},
	}, {
		name:   "wildcard methods without credentials: the method asked for, no credentials header",
		cors:   corsWildcardMethods,
		header: map[string]string{"Origin": "https://www.foo.com", hdrRequestMethod: "POST"},
		want:   map[string]string{hdrAllowOrigin: "https://www.foo.com", hdrAllowMethods: "POST", hdrAllowCredentials: "", hdrMaxAge: "5"},
	}, {
		name:   "wildcard origin without credentials answers *",
		cors:   corsWildcardOrigin,
		header: map[string]string{"Origin": "https://foobar.com:12345", hdrRequestMethod: "PUT"},
		want:   map[string]string{hdrAllowOrigin: "*", hdrAllowMethods: "PUT", hdrAllowCredentials: "", hdrVary: ""},
	}, {
		name:   "wildcard origin without credentials allows the null origin with *",
		cors:   corsWildcardOrigin,
		header: map[string]string{"Origin": "null", hdrRequestMethod: "PUT"},
		want:   map[string]string{hdrAllowOrigin: "*"},
	}, {
		name:   "all wildcards with credentials: never *, the request's own values",
		cors:   corsAllWildcardsCreds,
		header: map[string]string{"Origin": "https://other.foo.com", hdrRequestMethod: "PUT", hdrRequestHeaders: "X-Header-1,x-header-2"},
		want: map[string]string{hdrAllowOrigin: "https://other.foo.com", hdrAllowMethods: "PUT", hdrAllowHeaders: "x-header-1, x-header-2",
			hdrAllowCredentials: "true", hdrExposeHeaders: ""},
	}, {
		name:   "all wildcards with credentials refuse the null origin",
		cors:   corsAllWildcardsCreds,
		header: map[string]string{"Origin": "null", hdrRequestMethod: "PUT"},
		want:   map[string]string{hdrAllowOrigin: "", hdrAllowCredentials: ""},
	}, {
		name:   "an Origin with bytes a header must not carry is no origin (found by FuzzCORS)",
		cors:   corsAllWildcardsCreds,
		header: map[string]string{"Origin": "http://\x17", hdrRequestMethod: "PUT"},
		want:   map[string]string{hdrAllowOrigin: "", hdrAllowCredentials: ""},
	}, {
		name:   "a literal * asked for is not echoed with credentials (found by FuzzCORS)",
		cors:   corsAllWildcardsCreds,
		header: map[string]string{"Origin": "https://a.example", hdrRequestMethod: "*", hdrRequestHeaders: "* , x-a"},
		want:   map[string]string{hdrAllowOrigin: "https://a.example", hdrAllowMethods: "", hdrAllowHeaders: "x-a"},
	}, {
		name:   "wildcard headers without the request header: Allow-Headers absent",
		cors:   corsAllWildcards,
		header: map[string]string{"Origin": "https://other.foo.com", hdrRequestMethod: "PUT"},
		want:   map[string]string{hdrAllowOrigin: "*", hdrAllowMethods: "PUT", hdrAllowHeaders: "", hdrAllowCredentials: ""},
	}, {
		name:   "echoed header names are tokens only",
		cors:   corsAllWildcards,
		header: map[string]string{"Origin": "https://a.example", hdrRequestMethod: "PUT", hdrRequestHeaders: "x-ok, bad name, x:colon, ,x-two"},
		want:   map[string]string{hdrAllowHeaders: "x-ok, x-two"},
	}, {
		name:   "an echoed method must be a token",
		cors:   corsAllWildcards,
		header: map[string]string{"Origin": "https://a.example", hdrRequestMethod: "PU T"},
		want:   map[string]string{hdrAllowOrigin: "*", hdrAllowMethods: ""},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := corsReq(http.MethodOptions, tc.header)
			pf := CORSPreflight(corsFilters(tc.cors), r)
			if pf == nil {
				t.Fatal("a preflight on a route with a CORS filter was not answered")
			}
			if pf.Status != http.StatusNoContent {
				t.Errorf("status %d, want 204", pf.Status)
			}
			for k, v := range tc.want {
				if got := strings.Join(pf.Header.Values(k), ","); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestCORSPreflightOnlyWhenItIsOne(t *testing.T) {
	fs := corsFilters(corsMultiple)
	for name, r := range map[string]*http.Request{
		"OPTIONS without Access-Control-Request-Method": corsReq(http.MethodOptions, map[string]string{"Origin": "https://www.foo.com"}),
		"OPTIONS without Origin":                        corsReq(http.MethodOptions, map[string]string{hdrRequestMethod: "GET"}),
		"GET with both headers":                         corsReq(http.MethodGet, map[string]string{"Origin": "https://www.foo.com", hdrRequestMethod: "GET"}),
	} {
		if pf := CORSPreflight(fs, r); pf != nil {
			t.Errorf("%s: answered as a preflight; it must be forwarded", name)
		}
	}
	r := corsReq(http.MethodOptions, map[string]string{"Origin": "https://www.foo.com", hdrRequestMethod: "GET"})
	if pf := CORSPreflight(compileFilters(nil), r); pf != nil {
		t.Error("a route without a CORS filter answered a preflight")
	}
}

func TestCORSActualResponse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cors   *api.CORS
		origin string
		resp   http.Header // the application's response headers
		want   map[string]string
	}{{
		name:   "allowed origin: origin, credentials, exposed headers; Vary added to the app's",
		cors:   corsMultiple,
		origin: "https://www.foo.com",
		resp:   http.Header{"Vary": {"Accept-Encoding"}},
		want: map[string]string{hdrAllowOrigin: "https://www.foo.com", hdrAllowCredentials: "true", hdrExposeHeaders: "x-header-3, x-header-4",
			hdrVary: "Accept-Encoding,Origin", hdrAllowMethods: "", hdrMaxAge: ""},
	}, {
		name:   "the app's own CORS headers are replaced by the route's",
		cors:   corsMultiple,
		origin: "https://a.bar.com",
		resp:   http.Header{hdrAllowOrigin: {"*"}, hdrAllowCredentials: {"false"}},
		want:   map[string]string{hdrAllowOrigin: "https://a.bar.com", hdrAllowCredentials: "true"},
	}, {
		name:   "wildcard origin without credentials",
		cors:   corsWildcardOrigin,
		origin: "https://foobar.com:12345",
		want:   map[string]string{hdrAllowOrigin: "*", hdrAllowCredentials: ""},
	}, {
		name:   "wildcard expose without credentials is *",
		cors:   &api.CORS{AllowOrigins: []string{"*"}, ExposeHeaders: []string{"*"}},
		origin: "https://a.example",
		resp:   http.Header{"X-Secret-Ish": {"1"}},
		want:   map[string]string{hdrExposeHeaders: "*"},
	}, {
		name:   "wildcard expose with credentials lists the response's headers",
		cors:   &api.CORS{AllowOrigins: []string{"*"}, ExposeHeaders: []string{"*"}, AllowCredentials: true},
		origin: "https://a.example",
		resp:   http.Header{"X-B": {"1"}, "X-A": {"2"}, "Vary": {"Accept"}},
		want:   map[string]string{hdrExposeHeaders: "x-a, x-b", hdrAllowOrigin: "https://a.example", hdrAllowCredentials: "true"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := corsReq(http.MethodGet, map[string]string{"Origin": tc.origin})
			a := CORSFor(corsFilters(tc.cors), r)
			if a == nil {
				t.Fatal("no CORS headers for an allowed origin")
			}
			h := tc.resp.Clone()
			if h == nil {
				h = http.Header{}
			}
			a.Apply(h)
			for k, v := range tc.want {
				if got := strings.Join(h.Values(k), ","); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
	fs := corsFilters(corsMultiple)
	for _, origin := range []string{"", "https://foobar.com", "null", "https://www.foo.com/path", "https://www.foo.com:0", "ftp://www.foo.com"} {
		h := http.Header{"Vary": {"Accept-Encoding"}, hdrAllowOrigin: {"https://app.example"}}
		CORSFor(fs, corsReq(http.MethodGet, map[string]string{"Origin": origin})).Apply(h)
		want := http.Header{"Vary": {"Accept-Encoding", "Origin"}, hdrAllowOrigin: {"https://app.example"}}
		if !reflect.DeepEqual(h, want) {
			t.Errorf("origin %q: response headers %v, want %v (only Vary added)", origin, h, want)
		}
	}
	if a := CORSFor(compileFilters(nil), corsReq(http.MethodGet, map[string]string{"Origin": "https://www.foo.com"})); a != nil {
		t.Error("a route without a CORS filter would touch the response")
	}
	var none *CORSResponse
	none.Apply(http.Header{}) // the pipeline calls it unconditionally
}

// TestCORSBadPatternsAllowNothing: an allowOrigins entry the proxy cannot read (the
// control plane refuses them; this is the proxy's own guard) never widens to a
// wildcard.
func TestCORSBadPatternsAllowNothing(t *testing.T) {
	fs := corsFilters(&api.CORS{AllowOrigins: []string{"https://*", "*.example.com", "https://a*.example.com", "https://*.", "gopher://x", "https://x.example:99999"}})
	c := corsOf(fs)
	if len(c.origins) != 1 || !c.origins[0].anyHost || c.origins[0].scheme != "https" {
		t.Fatalf("compiled origins %+v; want only https://*", c.origins)
	}
	for _, origin := range []string{"http://a.example.com", "https://x.example:99999", "gopher://x"} {
		if c.allowed(origin) {
			t.Errorf("origin %q allowed", origin)
		}
	}
	if !c.allowed("https://anything.example") {
		t.Error("https://* does not allow an https origin")
	}
}

// FuzzCORS feeds fuzzed allowOrigins entries and fuzzed request headers (the
// application writes Origin and the Access-Control-Request-* headers) through both
// paths: nothing may panic, every header written must be a valid field value, "*"
// is never sent with credentials, and an exact pattern allows only its own origin.
func FuzzCORS(f *testing.F) {
	f.Add("https://*.bar.com", "https://a.bar.com:443", "PUT", "x-a, x-b", true)
	f.Add("*", "null", "GET", "", false)
	f.Add("http://[::1]:8080", "http://[::1]:8080", "P\x00", "a,\r\nb", true)
	f.Fuzz(func(t *testing.T, pattern, origin, method, reqHeaders string, creds bool) {
		c := &api.CORS{AllowOrigins: []string{pattern}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"},
			ExposeHeaders: []string{"*"}, AllowCredentials: creds}
		fs := corsFilters(c)
		r := &http.Request{Method: http.MethodOptions, Header: http.Header{}}
		r.Header[hdrOrigin] = []string{origin}
		r.Header[hdrRequestMethod] = []string{method}
		r.Header[hdrRequestHeaders] = []string{reqHeaders}
		check := func(h http.Header) {
			for k, vs := range h {
				for _, v := range vs {
					if !httpguts.ValidHeaderFieldValue(v) {
						t.Fatalf("%s: invalid value %q", k, v)
					}
				}
			}
			if creds && h.Get(hdrAllowOrigin) == "*" {
				t.Fatal("Access-Control-Allow-Origin * with credentials")
			}
		}
		if pf := CORSPreflight(fs, r); pf != nil {
			check(pf.Header)
			if creds && (pf.Header.Get(hdrAllowMethods) == "*" || pf.Header.Get(hdrAllowHeaders) == "*") {
				t.Fatal("a wildcard answer with credentials")
			}
		}
		r.Method = http.MethodGet
		a := CORSFor(fs, r)
		h := http.Header{"X-A": {"1"}}
		a.Apply(h)
		check(h)
		if (h.Get(hdrAllowOrigin) != "") != a.allowed {
			t.Fatalf("allowed=%v but Access-Control-Allow-Origin=%q", a.allowed, h.Get(hdrAllowOrigin))
		}
		if a.allowed {
			if p, ok := parseOriginPattern(pattern); ok && !p.anyHost && !p.suffix {
				s, host, port, _ := splitOrigin(origin)
				if s != p.scheme || host != p.host || port != p.port {
					t.Fatalf("pattern %q allowed origin %q", pattern, origin)
				}
			}
		}
	})
}
