// Package router compiles one destination's configuration (*api.DestinationConfig)
// into what the data path evaluates per request: route matchers, request and response
// filters, weighted backend choice, timeouts, the retry policy and response
// classification. Everything here is pure and immutable once compiled, so a compiled
// Table is shared by all requests to the destination's version without locks; the
// proxy compiles each configuration version once.
package router

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/api"
)

// Table is a compiled destination.
type Table struct {
	Config *api.DestinationConfig
	// Routes are tried in order.
	Routes []*Route
	// Fallback takes what no route matches; nil when route_source is GATEWAY_API,
	// which answers such requests 404 (gRPC: UNIMPLEMENTED).
	Fallback *Route
	// Backends by key.
	Backends map[string]*api.Backend
}

// Route is one compiled route.
type Route struct {
	// Index is the route's position in Table.Routes; len(Table.Routes) for the
	// fallback. The proxy keys per-route state (metrics series) by it.
	Index int
	// Name is the rt_route label.
	Name    string
	Proto   *api.Route
	matches []*match
	// Filters apply to the request (and the response header modifiers to the
	// response), in order.
	Filters []*Filter
	// Mirrors copy a share of the route's requests to other backends (mirror.go).
	Mirrors  []*Mirror
	Backends []*Backend
	cum      []uint64 // cumulative weights
	total    uint64
	// RequestTimeout bounds the whole request (0: none); BackendTimeout each attempt.
	RequestTimeout, BackendTimeout time.Duration
	// IdleTimeout ends a request when no body byte has moved either way for that
	// long (0: none).
	IdleTimeout time.Duration
	// Retry is nil when the route never retries.
	Retry   *Retry
	classes []*respCond
	failure []bool
}

// Backend is one weighted backend of a route.
type Backend struct {
	Key    string
	Weight uint32
	// Invalid says why the backend cannot be used (its share is answered 500).
	Invalid string
	Filters []*Filter
	// Mirrors copy the requests sent to this backend (a share of them) elsewhere.
	Mirrors []*Mirror
	// Config is the destination's backend of that key; nil when Invalid is set or
	// the key names no backend (then Invalid says so).
	Config *api.Backend
}

// Retry is a compiled retry policy.
type Retry struct {
	statuses    []*api.StatusRange
	grpcCodes   []uint32
	MaxAttempts int // 0: only the budget bounds retries
	Backoff     time.Duration
	// Timeout bounds each attempt up to its response head; an attempt it ends
	// is retried (0: none).
	Timeout time.Duration
}

// Compile compiles cfg. A route part that cannot be compiled (a regular expression
// that does not compile) makes its match never hold; the problems are returned,
// each naming the route, and the rest of the table still works.
func Compile(cfg *api.DestinationConfig) (*Table, []error) {
	t := &Table{Config: cfg, Backends: map[string]*api.Backend{}}
	for _, b := range cfg.GetBackends() {
		t.Backends[b.GetKey()] = b
	}
	var errs []error
	for i, r := range cfg.GetRoutes() {
		rt, e := t.compileRoute(r, i)
		errs = append(errs, e...)
		t.Routes = append(t.Routes, rt)
	}
	if fb := cfg.GetFallback(); fb != nil {
		rt, e := t.compileRoute(fb, len(t.Routes))
		errs = append(errs, e...)
		// The fallback matches everything whatever its (absent) matches say.
		rt.matches = nil
		t.Fallback = rt
	}
	return t, errs
}

func (t *Table) compileRoute(r *api.Route, index int) (*Route, []error) {
	var errs []error
	fail := func(err error) { errs = append(errs, fmt.Errorf("route %q: %w", r.GetName(), err)) }
	rt := &Route{Index: index, Name: r.GetName(), Proto: r}
	// An alternative that does not compile never matches; when every one was
	// invalid the route must not turn into match-all (CompileMatches).
	ms, merrs := CompileMatches(r.GetMatches())
	for _, err := range merrs {
		fail(err)
	}
	rt.matches = ms.matches
	rt.Filters = compileFilters(r.GetFilters())
	rt.Mirrors = t.compileMirrors(r.GetFilters())
	for _, wb := range r.GetBackends() {
		b := &Backend{Key: wb.GetBackend(), Weight: wb.GetWeight(), Invalid: wb.GetInvalid(), Filters: compileFilters(wb.GetFilters()), Mirrors: t.compileMirrors(wb.GetFilters())}
		if b.Invalid == "" {
			b.Config = t.Backends[b.Key]
			if b.Config == nil {
				b.Invalid = fmt.Sprintf("unknown backend %q", b.Key)
			}
		}
		rt.total += uint64(b.Weight)
		rt.cum = append(rt.cum, rt.total)
		rt.Backends = append(rt.Backends, b)
	}
	if to := r.GetTimeouts(); to != nil {
		rt.RequestTimeout = positive(to.GetRequest().AsDuration())
		rt.BackendTimeout = positive(to.GetBackendRequest().AsDuration())
		rt.IdleTimeout = positive(to.GetIdle().AsDuration())
	}
	if rp := r.GetRetry(); rp != nil {
		rt.Retry = &Retry{
			statuses:    rp.GetStatuses(),
			grpcCodes:   rp.GetGrpcCodes(),
			MaxAttempts: int(rp.GetMaxAttempts()),
			Backoff:     positive(rp.GetBackoff().AsDuration()),
			Timeout:     positive(rp.GetTimeout().AsDuration()),
		}
	}
	for _, rc := range r.GetResponseClasses() {
		rt.classes = append(rt.classes, compileRespCond(rc.GetCondition()))
		rt.failure = append(rt.failure, rc.GetIsFailure())
	}
	return rt, errs
}

func positive(d time.Duration) time.Duration { return max(d, 0) }

// Match returns the route taking r and the path prefix its match matched (for
// ReplacePrefixMatch); nil when no route matches and there is no fallback.
func (t *Table) Match(r *http.Request) (*Route, string) {
	if len(t.Routes) > 0 {
		q := lazyQuery{u: r.URL}
		for _, rt := range t.Routes {
			for _, m := range rt.matches {
				if m.match(r, &q) {
					return rt, m.pathPrefix()
				}
			}
			if len(rt.matches) == 0 {
				return rt, ""
			}
		}
	}
	return t.Fallback, ""
}

// Matcher is a compiled list of alternative RouteMatches, the form a route's matches
// take in the destination API and in the inbound policy API (proxy/inboundpolicy): a
// request matches when any alternative does; no alternatives match every request.
type Matcher struct {
	matches []*match
}

// CompileMatches compiles alternatives with the route table's rules: an alternative
// that does not compile never matches, and when none compiles the Matcher matches
// nothing (it never turns into match-all). The problems are returned.
func CompileMatches(ms []*api.RouteMatch) (Matcher, []error) {
	var out Matcher
	var errs []error
	for _, m := range ms {
		cm, err := compileMatch(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.matches = append(out.matches, cm)
	}
	if len(ms) > 0 && len(out.matches) == 0 {
		out.matches = []*match{{never: true}}
	}
	return out, errs
}

// Match reports whether r matches one of the alternatives.
func (m *Matcher) Match(r *http.Request) bool {
	if len(m.matches) == 0 {
		return true
	}
	q := lazyQuery{u: r.URL}
	for _, cm := range m.matches {
		if cm.match(r, &q) {
			return true
		}
	}
	return false
}

// PickBackend chooses a backend by weight; nil when every weight is 0 or there is
// none (the proxy answers 500).
func (rt *Route) PickBackend() *Backend {
	switch {
	case rt.total == 0:
		return nil
	case len(rt.Backends) == 1:
		return rt.Backends[0]
	}
	x := rand.Uint64N(rt.total)
	for i, c := range rt.cum {
		if x < c {
			return rt.Backends[i]
		}
	}
	return rt.Backends[len(rt.Backends)-1]
}

// GRPCNone is the grpc argument of IsFailure and Retryable for a response that has
// no grpc-status (yet).
const GRPCNone = -1

// IsFailure classifies a response: the first response class whose condition holds
// decides; else 5xx is a failure, and for gRPC any grpc-status but OK (0).
func (rt *Route) IsFailure(status, grpc int) bool {
	for i, c := range rt.classes {
		if c.eval(status) {
			return rt.failure[i]
		}
	}
	return status >= 500 || grpc > 0
}

// Retryable says whether a response (or an error, passed as the status the proxy
// would answer: 502, or 504 for a timeout) should be retried under rt's policy.
func (rt *Route) Retryable(status, grpc int) bool {
	if rt.Retry == nil {
		return false
	}
	if len(rt.Retry.statuses) == 0 && len(rt.Retry.grpcCodes) == 0 {
		return rt.IsFailure(status, grpc)
	}
	// Explicit conditions: exactly the statuses and gRPC codes they name. A gRPC
	// response is HTTP 200 whatever its grpc-status, so the two lists never
	// disagree about one response.
	for _, s := range rt.Retry.statuses {
		if uint32(status) >= s.GetMin() && uint32(status) <= s.GetMax() {
			return true
		}
	}
	if grpc > 0 && slices.Contains(rt.Retry.grpcCodes, uint32(grpc)) {
		return true
	}
	return false
}

// ParseGRPCStatus reads a grpc-status value; GRPCNone when absent or malformed. The
// grammar is grpcwire's (digits only, "00" is OK); this int form is what IsFailure and
// Retryable take.
func ParseGRPCStatus(v string) int {
	c, ok := grpcwire.ParseCode(v)
	if !ok {
		return GRPCNone
	}
	return int(c)
}

// ---- matching ----

type strKind uint8

const (
	strAny strKind = iota
	strExact
	strPrefix
	strRegex
)

type strMatch struct {
	kind strKind
	s    string
	re   *regexp.Regexp
}

func compileStr(m *api.StringMatch) (strMatch, error) {
	switch k := m.GetKind().(type) {
	case *api.StringMatch_Exact:
		return strMatch{kind: strExact, s: k.Exact}, nil
	case *api.StringMatch_Prefix:
		return strMatch{kind: strPrefix, s: k.Prefix}, nil
	case *api.StringMatch_Regex:
		re, err := regexp.Compile(`^(?:` + k.Regex + `)$`)
		if err != nil {
			return strMatch{}, fmt.Errorf("regex %q: %w", k.Regex, err)
		}
		return strMatch{kind: strRegex, s: k.Regex, re: re}, nil
	}
	return strMatch{kind: strAny}, nil
}

func (m *strMatch) match(v string) bool {
	switch m.kind {
	case strExact:
		return v == m.s
	case strPrefix:
		return strings.HasPrefix(v, m.s)
	case strRegex:
		return m.re.MatchString(v)
	}
	return true
}

// matchPath is match with Gateway API PathPrefix semantics: the prefix matches whole
// path segments, so /foo matches /foo, /foo/ and /foo/bar but not /foobar (a trailing
// slash in the prefix is ignored).
func (m *strMatch) matchPath(p string) bool {
	if m.kind != strPrefix {
		return m.match(p)
	}
	pre := strings.TrimSuffix(m.s, "/")
	if pre == "" {
		return true
	}
	return p == pre || (strings.HasPrefix(p, pre) && p[len(pre)] == '/')
}

type headerMatch struct {
	name  string // canonical for headers
	value strMatch
}

type match struct {
	never   bool
	path    *strMatch
	method  string
	headers []headerMatch
	query   []headerMatch
	grpc    bool
	service strMatch
	gmethod strMatch
	cond    *reqCond
}

func compileMatch(m *api.RouteMatch) (*match, error) {
	out := &match{method: m.GetMethod()}
	if m.GetPath() != nil {
		sm, err := compileStr(m.GetPath())
		if err != nil {
			return nil, fmt.Errorf("path: %w", err)
		}
		out.path = &sm
	}
	for _, h := range m.GetHeaders() {
		sm, err := compileStr(h.GetValue())
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", h.GetName(), err)
		}
		out.headers = append(out.headers, headerMatch{name: http.CanonicalHeaderKey(h.GetName()), value: sm})
	}
	for _, q := range m.GetQueryParams() {
		sm, err := compileStr(q.GetValue())
		if err != nil {
			return nil, fmt.Errorf("query parameter %s: %w", q.GetName(), err)
		}
		out.query = append(out.query, headerMatch{name: q.GetName(), value: sm})
	}
	if g := m.GetGrpc(); g != nil {
		out.grpc = true
		var err error
		if out.service, err = compileStr(g.GetService()); err != nil {
			return nil, fmt.Errorf("grpc service: %w", err)
		}
		if out.gmethod, err = compileStr(g.GetMethod()); err != nil {
			return nil, fmt.Errorf("grpc method: %w", err)
		}
	}
	if c := m.GetCondition(); c != nil {
		rc, err := compileReqCond(c)
		if err != nil {
			return nil, fmt.Errorf("condition: %w", err)
		}
		out.cond = rc
	}
	return out, nil
}

// lazyQuery parses the query string once, and only when a route asks.
type lazyQuery struct {
	u *url.URL
	v url.Values
}

func (q *lazyQuery) get(name string) ([]string, bool) {
	if q.v == nil {
		q.v = q.u.Query()
	}
	v, ok := q.v[name]
	return v, ok
}

// IsGRPC reports whether r is a gRPC request (content-type application/grpc or
// application/grpc+proto etc., per the gRPC over HTTP/2 spec).
func IsGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc") && (len(ct) == 16 || ct[16] == '+' || ct[16] == ';')
}

func (m *match) match(r *http.Request, q *lazyQuery) bool {
	if m.never {
		return false
	}
	path := r.URL.Path
	if m.path != nil && !m.path.matchPath(path) {
		return false
	}
	if m.method != "" && r.Method != m.method {
		return false
	}
	for i := range m.headers {
		h := &m.headers[i]
		vs := r.Header[h.name]
		if len(vs) == 0 {
			return false
		}
		v := vs[0]
		if len(vs) > 1 {
			v = strings.Join(vs, ",")
		}
		if !h.value.match(v) {
			return false
		}
	}
	for i := range m.query {
		h := &m.query[i]
		vs, ok := q.get(h.name)
		if !ok {
			return false
		}
		v := ""
		if len(vs) > 0 {
			v = vs[0]
		}
		if len(vs) > 1 {
			v = strings.Join(vs, ",")
		}
		if !h.value.match(v) {
			return false
		}
	}
	if m.grpc {
		if !IsGRPC(r) || len(path) < 2 || path[0] != '/' {
			return false
		}
		svc, meth, ok := strings.Cut(path[1:], "/")
		if !ok || strings.Contains(meth, "/") || !m.service.match(svc) || !m.gmethod.match(meth) {
			return false
		}
	}
	if m.cond != nil && !m.cond.eval(r.Method, path) {
		return false
	}
	return true
}

// pathPrefix is the prefix a PathPrefix match matched, for ReplacePrefixMatch.
func (m *match) pathPrefix() string {
	if m.path != nil && m.path.kind == strPrefix {
		return m.path.s
	}
	return ""
}

// reqCond is a compiled ServiceProfile request condition.
type reqCond struct {
	op     byte // 'a' all, 'o' any, 'n' not, 'p' path regex, 'm' method
	subs   []*reqCond
	re     *regexp.Regexp
	method string
}

var errEmptyCondition = errors.New("empty condition")

func compileReqCond(c *api.RequestCondition) (*reqCond, error) {
	switch k := c.GetKind().(type) {
	case *api.RequestCondition_All:
		out := &reqCond{op: 'a'}
		for _, s := range k.All.GetConditions() {
			sc, err := compileReqCond(s)
			if err != nil {
				return nil, err
			}
			out.subs = append(out.subs, sc)
		}
		return out, nil
	case *api.RequestCondition_Any:
		out := &reqCond{op: 'o'}
		for _, s := range k.Any.GetConditions() {
			sc, err := compileReqCond(s)
			if err != nil {
				return nil, err
			}
			out.subs = append(out.subs, sc)
		}
		return out, nil
	case *api.RequestCondition_Not:
		sc, err := compileReqCond(k.Not)
		if err != nil {
			return nil, err
		}
		return &reqCond{op: 'n', subs: []*reqCond{sc}}, nil
	case *api.RequestCondition_PathRegex:
		re, err := regexp.Compile(`^(?:` + k.PathRegex + `)$`)
		if err != nil {
			return nil, fmt.Errorf("pathRegex %q: %w", k.PathRegex, err)
		}
		return &reqCond{op: 'p', re: re}, nil
	case *api.RequestCondition_Method:
		return &reqCond{op: 'm', method: k.Method}, nil
	}
	return nil, errEmptyCondition
}

func (c *reqCond) eval(method, path string) bool {
	switch c.op {
	case 'a':
		for _, s := range c.subs {
			if !s.eval(method, path) {
				return false
			}
		}
		return true
	case 'o':
		for _, s := range c.subs {
			if s.eval(method, path) {
				return true
			}
		}
		return false
	case 'n':
		return !c.subs[0].eval(method, path)
	case 'p':
		return c.re.MatchString(path)
	case 'm':
		return method == c.method
	}
	return false
}

// respCond is a compiled response condition.
type respCond struct {
	op       byte // 'a', 'o', 'n', 's'
	subs     []*respCond
	min, max int
}

func compileRespCond(c *api.ResponseCondition) *respCond {
	switch k := c.GetKind().(type) {
	case *api.ResponseCondition_All:
		out := &respCond{op: 'a'}
		for _, s := range k.All.GetConditions() {
			out.subs = append(out.subs, compileRespCond(s))
		}
		return out
	case *api.ResponseCondition_Any:
		out := &respCond{op: 'o'}
		for _, s := range k.Any.GetConditions() {
			out.subs = append(out.subs, compileRespCond(s))
		}
		return out
	case *api.ResponseCondition_Not:
		return &respCond{op: 'n', subs: []*respCond{compileRespCond(k.Not)}}
	case *api.ResponseCondition_Status:
		return &respCond{op: 's', min: int(k.Status.GetMin()), max: int(k.Status.GetMax())}
	}
	// An empty condition never holds (a class without a condition classifies nothing).
	return &respCond{op: 'o'}
}

func (c *respCond) eval(status int) bool {
	switch c.op {
	case 'a':
		for _, s := range c.subs {
			if !s.eval(status) {
				return false
			}
		}
		return true
	case 'o':
		for _, s := range c.subs {
			if s.eval(status) {
				return true
			}
		}
		return false
	case 'n':
		return !c.subs[0].eval(status)
	case 's':
		return status >= c.min && status <= c.max
	}
	return false
}
