package inboundpolicy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/metrics"
)

const (
	idA = "spiffe://cluster.local/ns/shop/sa/a"
	idB = "spiffe://cluster.local/ns/shop/sa/b"
	idX = "spiffe://cluster.local/ns/other/sa/x"
)

var (
	inCluster  = netip.MustParseAddr("10.1.2.3")
	outCluster = netip.MustParseAddr("203.0.113.9")
)

func ref(kind, name string) *api.PolicyRef {
	return &api.PolicyRef{Group: "policy.weft.dev", Kind: kind, Name: name}
}

func exactID(id string) *api.IdentityMatch {
	return &api.IdentityMatch{Kind: &api.IdentityMatch_Exact{Exact: id}}
}

func prefixID(p string) *api.IdentityMatch {
	return &api.IdentityMatch{Kind: &api.IdentityMatch_Prefix{Prefix: p}}
}

func nets(cidrs ...string) *api.NetworkSet {
	s := &api.NetworkSet{}
	for _, c := range cidrs {
		n := &api.Network{Cidr: c}
		if cidr, except, ok := strings.Cut(c, " except "); ok {
			n = &api.Network{Cidr: cidr, Except: strings.Split(except, ",")}
		}
		s.Networks = append(s.Networks, n)
	}
	return s
}

func ids(ms ...*api.IdentityMatch) *api.IdentitySet { return &api.IdentitySet{Matches: ms} }

func authz(name string, ns []*api.NetworkSet, is []*api.IdentitySet) *api.Authorization {
	return &api.Authorization{Ref: ref("AuthorizationPolicy", name), Networks: ns, Identities: is}
}

func denyDefault() *api.InboundServer {
	return &api.InboundServer{Ref: &api.PolicyRef{Kind: "default", Name: "deny"}}
}

// onePort is a policy with one server on port 8080 and a deny default.
func onePort(s *api.InboundServer) *api.InboundPolicy {
	s.Port = 8080
	if s.Ref == nil {
		s.Ref = ref("Server", "web")
	}
	return &api.InboundPolicy{Version: "v1", DefaultServer: denyDefault(), Servers: []*api.InboundServer{s}}
}

func get(path string) *http.Request { return httptest.NewRequest(http.MethodGet, path, nil) }

// TestConnectionDecisions: the server's authorizations, each an AND of its network
// sets and identity sets, admit a connection; any one admitting is enough.
func TestConnectionDecisions(t *testing.T) {
	tests := []struct {
		name   string
		authz  []*api.Authorization
		client Client
		want   Verdict
		by     string
	}{
		{"no authorization denies", nil, Client{Addr: inCluster, ID: idA}, Denied, ""},
		{"no conditions admits plaintext", []*api.Authorization{authz("open", nil, nil)}, Client{Addr: outCluster}, Allowed, "open"},
		{"exact identity", []*api.Authorization{authz("a", nil, []*api.IdentitySet{ids(exactID(idA))})}, Client{Addr: inCluster, ID: idA}, Allowed, "a"},
		{"other identity", []*api.Authorization{authz("a", nil, []*api.IdentitySet{ids(exactID(idA))})}, Client{Addr: inCluster, ID: idB}, Denied, ""},
		{"identity required, none", []*api.Authorization{authz("a", nil, []*api.IdentitySet{ids(exactID(idA))})}, Client{Addr: inCluster}, Denied, ""},
		{"empty set: any verified identity", []*api.Authorization{authz("any", nil, []*api.IdentitySet{{}})}, Client{Addr: inCluster, ID: idX}, Allowed, "any"},
		{"empty set: not plaintext", []*api.Authorization{authz("any", nil, []*api.IdentitySet{{}})}, Client{Addr: inCluster}, Denied, ""},
		{"prefix", []*api.Authorization{authz("ns", nil, []*api.IdentitySet{ids(prefixID("spiffe://cluster.local/ns/shop/sa/"))})}, Client{Addr: inCluster, ID: idB}, Allowed, "ns"},
		{"prefix other namespace", []*api.Authorization{authz("ns", nil, []*api.IdentitySet{ids(prefixID("spiffe://cluster.local/ns/shop/sa/"))})}, Client{Addr: inCluster, ID: idX}, Denied, ""},
		{"identity sets are ANDed", []*api.Authorization{authz("and", nil, []*api.IdentitySet{ids(exactID(idA), exactID(idB)), ids(exactID(idB))})}, Client{Addr: inCluster, ID: idA}, Denied, ""},
		{"identity sets both hold", []*api.Authorization{authz("and", nil, []*api.IdentitySet{ids(exactID(idA), exactID(idB)), ids(exactID(idB))})}, Client{Addr: inCluster, ID: idB}, Allowed, "and"},
		{"network in", []*api.Authorization{authz("net", []*api.NetworkSet{nets("10.0.0.0/8")}, nil)}, Client{Addr: inCluster}, Allowed, "net"},
		{"network out", []*api.Authorization{authz("net", []*api.NetworkSet{nets("10.0.0.0/8")}, nil)}, Client{Addr: outCluster}, Denied, ""},
		{"network except", []*api.Authorization{authz("net", []*api.NetworkSet{nets("10.0.0.0/8 except 10.1.0.0/16")}, nil)}, Client{Addr: inCluster}, Denied, ""},
		{"single address", []*api.Authorization{authz("net", []*api.NetworkSet{nets("10.1.2.3")}, nil)}, Client{Addr: inCluster}, Allowed, "net"},
		{"mapped client address", []*api.Authorization{authz("net", []*api.NetworkSet{nets("10.0.0.0/8")}, nil)}, Client{Addr: netip.MustParseAddr("::ffff:10.1.2.3").Unmap()}, Allowed, "net"},
		{"IPv4-mapped CIDR", []*api.Authorization{authz("net", []*api.NetworkSet{nets("::ffff:10.0.0.0/104")}, nil)}, Client{Addr: inCluster}, Allowed, "net"},
		{"IPv4-mapped CIDR shorter than /96", []*api.Authorization{authz("net", []*api.NetworkSet{nets("::ffff:0.0.0.0/90")}, nil)}, Client{Addr: inCluster}, Denied, ""},
		{"IPv6 network", []*api.Authorization{authz("net", []*api.NetworkSet{nets("fd00::/8")}, nil)}, Client{Addr: netip.MustParseAddr("fd00::1")}, Allowed, "net"},
		{"network sets are ANDed", []*api.Authorization{authz("net", []*api.NetworkSet{nets("10.0.0.0/8"), nets("192.168.0.0/16")}, nil)}, Client{Addr: inCluster}, Denied, ""},
		{"empty network set admits no address", []*api.Authorization{authz("net", []*api.NetworkSet{{}}, nil)}, Client{Addr: inCluster}, Denied, ""},
		{"network and identity", []*api.Authorization{authz("both", []*api.NetworkSet{nets("10.0.0.0/8")}, []*api.IdentitySet{{}})}, Client{Addr: outCluster, ID: idA}, Denied, ""},
		{"second authorization admits", []*api.Authorization{authz("a", nil, []*api.IdentitySet{ids(exactID(idA))}), authz("b", nil, []*api.IdentitySet{ids(exactID(idB))})}, Client{Addr: inCluster, ID: idB}, Allowed, "b"},
		// Never widen: a part that does not compile makes its authorization admit no one.
		{"bad CIDR", []*api.Authorization{authz("bad", []*api.NetworkSet{nets("10.0.0.0/8", "not-a-cidr")}, nil)}, Client{Addr: inCluster}, Denied, ""},
		{"bad except", []*api.Authorization{authz("bad", []*api.NetworkSet{nets("10.0.0.0/8 except 10.1.0.0/99")}, nil)}, Client{Addr: inCluster}, Denied, ""},
		{"prefix without slash", []*api.Authorization{authz("bad", nil, []*api.IdentitySet{ids(prefixID("spiffe://cluster.local/ns/sh"))})}, Client{Addr: inCluster, ID: idA}, Denied, ""},
		{"empty exact", []*api.Authorization{authz("bad", nil, []*api.IdentitySet{ids(exactID(""))})}, Client{Addr: inCluster, ID: idA}, Denied, ""},
		{"match of no kind", []*api.Authorization{authz("bad", nil, []*api.IdentitySet{ids(&api.IdentityMatch{})})}, Client{Addr: inCluster, ID: idA}, Denied, ""},
		{"bad one, good other", []*api.Authorization{authz("bad", []*api.NetworkSet{nets("x")}, nil), authz("good", nil, nil)}, Client{Addr: inCluster}, Allowed, "good"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Compile(onePort(&api.InboundServer{Authorizations: tt.authz}))
			d := p.Server(8080).Connection(tt.client)
			if d.Verdict != tt.want || (tt.want == Allowed && d.Authz.Name != tt.by) {
				t.Fatalf("verdict %v by %+v, want %v by %q", d.Verdict, d.Authz, tt.want, tt.by)
			}
		})
	}
}

// TestRequestDecisions: probes, routes and audit on top of the authorizations.
func TestRequestDecisions(t *testing.T) {
	onlyA := []*api.Authorization{authz("only-a", nil, []*api.IdentitySet{ids(exactID(idA))})}
	routes := []*api.InboundRoute{
		{Ref: &api.PolicyRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "admin"},
			Matches:        []*api.RouteMatch{{Path: &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: "/admin"}}}},
			Authorizations: onlyA},
		{Ref: &api.PolicyRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "public"},
			Matches:        []*api.RouteMatch{{Path: &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: "/public"}}}},
			Authorizations: []*api.Authorization{authz("anyone", nil, nil)}},
		{Ref: &api.PolicyRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "bad"},
			Matches:        []*api.RouteMatch{{Path: &api.StringMatch{Kind: &api.StringMatch_Regex{Regex: "(["}}}},
			Authorizations: []*api.Authorization{authz("anyone", nil, nil)}},
		{Ref: &api.PolicyRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "server-only"},
			Matches: []*api.RouteMatch{{Path: &api.StringMatch{Kind: &api.StringMatch_Exact{Exact: "/b"}}}}},
	}
	serverB := []*api.Authorization{authz("server-b", nil, []*api.IdentitySet{ids(exactID(idB))})}
	tests := []struct {
		name   string
		srv    *api.InboundServer
		req    *http.Request
		client Client
		want   Verdict
		route  string
		by     string
	}{
		{"probe GET under deny", &api.InboundServer{ProbePaths: []string{"/healthz"}}, get("/healthz"), Client{Addr: outCluster}, Allowed, "", "probe"},
		{"probe HEAD", &api.InboundServer{ProbePaths: []string{"/healthz"}}, httptest.NewRequest(http.MethodHead, "/healthz", nil), Client{}, Allowed, "", "probe"},
		{"probe POST is not a probe", &api.InboundServer{ProbePaths: []string{"/healthz"}}, httptest.NewRequest(http.MethodPost, "/healthz", nil), Client{}, Denied, "", ""},
		{"probe path is exact", &api.InboundServer{ProbePaths: []string{"/healthz"}}, get("/healthz/x"), Client{}, Denied, "", ""},
		{"audit admits and flags", &api.InboundServer{Audit: true}, get("/"), Client{Addr: outCluster}, Allowed, "", "audit"},
		{"audit: authorization first", &api.InboundServer{Audit: true, Authorizations: onlyA}, get("/"), Client{ID: idA}, Allowed, "", "only-a"},
		{"route allows A", &api.InboundServer{Routes: routes}, get("/admin/x"), Client{ID: idA}, Allowed, "admin", "only-a"},
		{"route denies B", &api.InboundServer{Routes: routes}, get("/admin/x"), Client{ID: idB}, Denied, "admin", ""},
		{"server authorization admits on a route", &api.InboundServer{Routes: routes, Authorizations: serverB}, get("/admin/x"), Client{ID: idB}, Allowed, "admin", "server-b"},
		{"other route admits anyone", &api.InboundServer{Routes: routes}, get("/public"), Client{}, Allowed, "public", "anyone"},
		{"route without authorizations uses the server's", &api.InboundServer{Routes: routes, Authorizations: serverB}, get("/b"), Client{ID: idB}, Allowed, "server-only", "server-b"},
		{"no route matches", &api.InboundServer{Routes: routes, Authorizations: serverB}, get("/other"), Client{ID: idB}, NoRoute, "", ""},
		{"bad route regex matches nothing", &api.InboundServer{Routes: routes[2:3]}, get("/x"), Client{}, NoRoute, "", ""},
		{"probe before routes", &api.InboundServer{Routes: routes, ProbePaths: []string{"/ready"}}, get("/ready"), Client{}, Allowed, "", "probe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Compile(onePort(tt.srv))
			d := p.Server(8080).Request(tt.req, tt.client)
			route := ""
			if d.Route != nil {
				route = d.Route.Ref.Name
			}
			if d.Verdict != tt.want || route != tt.route || (tt.want == Allowed && d.Authz.Name != tt.by) {
				t.Fatalf("verdict %v route %q by %+v, want %v route %q by %q", d.Verdict, route, d.Authz, tt.want, tt.route, tt.by)
			}
			if d.Audit != (tt.by == "audit") {
				t.Fatalf("audit flag %v", d.Audit)
			}
		})
	}
	// Routes never apply to connections.
	p := Compile(onePort(&api.InboundServer{Routes: routes, Authorizations: serverB}))
	if d := p.Server(8080).Connection(Client{ID: idA}); d.Verdict != Denied {
		t.Fatalf("route authorization admitted a connection: %+v", d)
	}
}

// TestCompileNeverWidens: a message the proxy cannot read whole admits no more than
// what it can read says.
func TestCompileNeverWidens(t *testing.T) {
	for _, tt := range []struct {
		name string
		msg  *api.InboundPolicy
	}{
		{"nil", nil},
		{"no default server", &api.InboundPolicy{Servers: []*api.InboundServer{{Port: 9090, Authorizations: []*api.Authorization{authz("open", nil, nil)}}}}},
		{"server port 0", &api.InboundPolicy{DefaultServer: denyDefault(), Servers: []*api.InboundServer{{Port: 0, Authorizations: []*api.Authorization{authz("open", nil, nil)}}}}},
		{"server port too big", &api.InboundPolicy{DefaultServer: denyDefault(), Servers: []*api.InboundServer{{Port: 65536 + 8080, Authorizations: []*api.Authorization{authz("open", nil, nil)}}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := Compile(tt.msg)
			if d := p.Server(8080).Request(get("/"), Client{Addr: inCluster, ID: idA}); d.Verdict != Denied {
				t.Fatalf("port 8080: %+v, want denied", d)
			}
		})
	}
	// Two servers on a port: the first wins, the second is reported.
	p := Compile(&api.InboundPolicy{DefaultServer: denyDefault(), Servers: []*api.InboundServer{
		{Port: 8080, Ref: ref("Server", "first")}, {Port: 8080, Ref: ref("Server", "second"), Authorizations: []*api.Authorization{authz("open", nil, nil)}}}})
	if s := p.Server(8080); s.Ref.Name != "first" || len(p.Problems) != 1 {
		t.Fatalf("duplicate port: server %q, problems %q", s.Ref.Name, p.Problems)
	}
}

// TestBootstrap: every default policy name the injector may pass builds the server
// the control plane would, and an unknown name denies.
func TestBootstrap(t *testing.T) {
	probe := get("/healthz")
	tests := []struct {
		policy                                 config.Policy
		plainOut, plainIn, meshOut, meshIn, au bool
	}{
		{config.PolicyAllUnauthenticated, true, true, true, true, false},
		{config.PolicyAllAuthenticated, false, false, true, true, false},
		{config.PolicyClusterUnauthenticated, false, true, false, true, false},
		{config.PolicyClusterAuthenticated, false, false, false, true, false},
		{config.PolicyDeny, false, false, false, false, false},
		{config.PolicyAudit, true, true, true, true, true},
		{"open-sesame", false, false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.policy), func(t *testing.T) {
			in := &config.Inbound{DefaultPolicy: tt.policy, ProbePaths: []config.ProbePath{{Port: 8080, Path: "/healthz"}}}
			p := Compile(Bootstrap(in))
			if len(p.Problems) != 0 {
				t.Fatalf("problems: %q", p.Problems)
			}
			s := p.Server(9999)
			if s.Ref != (Ref{Kind: "default", Name: string(tt.policy)}) {
				t.Fatalf("default server %+v", s.Ref)
			}
			for _, c := range []struct {
				client Client
				want   bool
			}{{Client{Addr: outCluster}, tt.plainOut}, {Client{Addr: inCluster}, tt.plainIn}, {Client{Addr: outCluster, ID: idA}, tt.meshOut}, {Client{Addr: inCluster, ID: idA}, tt.meshIn}} {
				d := s.Connection(c.client)
				if (d.Verdict == Allowed) != c.want || d.Audit != tt.au {
					t.Errorf("%+v: %+v, want allowed=%v audit=%v", c.client, d, c.want, tt.au)
				}
			}
			// The probe port is the default policy plus its probe.
			if d := p.Server(8080).Request(probe, Client{Addr: outCluster}); d.Verdict != Allowed || d.Authz != ProbeRef {
				t.Errorf("probe: %+v", d)
			}
			if d := p.Server(9999).Request(probe, Client{Addr: outCluster}); (d.Verdict == Allowed) != tt.plainOut {
				t.Errorf("probe path on a port without probes: %+v", d)
			}
		})
	}
	// Cluster networks from the configuration replace the default ones.
	p := Compile(Bootstrap(&config.Inbound{DefaultPolicy: config.PolicyClusterUnauthenticated, ClusterNetworks: []string{"203.0.113.0/24"}}))
	if p.Server(1).Connection(Client{Addr: outCluster}).Verdict != Allowed || p.Server(1).Connection(Client{Addr: inCluster}).Verdict != Denied {
		t.Fatal("cluster networks not applied")
	}
	// Port policies of the static configuration.
	p = Compile(Bootstrap(&config.Inbound{DefaultPolicy: config.PolicyDeny, PortPolicies: []config.PortPolicy{{Port: 80, Policy: config.PolicyAllUnauthenticated}}}))
	if p.Server(80).Connection(Client{}).Verdict != Allowed || p.Server(81).Connection(Client{}).Verdict != Denied {
		t.Fatal("port policy not applied")
	}
}

// TestCheckerCountsAndSwaps: decisions are counted in Linkerd's series, a new policy
// applies to the next decision, and an open connection it no longer admits is closed
// and counted as terminated.
func TestCheckerCountsAndSwaps(t *testing.T) {
	reg := metrics.New()
	c := &Checker{Log: logr.Discard(), Metrics: reg}
	dst := netip.MustParseAddrPort("10.1.1.1:8080")
	c.SetBootstrap(Compile(Bootstrap(&config.Inbound{DefaultPolicy: config.PolicyAllUnauthenticated})))
	if d := c.Request(get("/"), dst, Client{Addr: inCluster}); d.Verdict != Allowed {
		t.Fatalf("bootstrap: %+v", d)
	}
	if !c.Connection(dst, Client{Addr: inCluster, ID: idB}) {
		t.Fatal("bootstrap connection denied")
	}
	closed := make(chan struct{})
	untrack := c.Track(dst, Client{Addr: inCluster, ID: idB}, func() { close(closed) })
	defer untrack()
	c.SetPolicy(Compile(onePort(&api.InboundServer{Authorizations: []*api.Authorization{authz("only-a", nil, []*api.IdentitySet{ids(exactID(idA))})}})))
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection the new policy denies was not closed")
	}
	// A bootstrap no longer replaces the control plane's policy.
	c.SetBootstrap(Compile(Bootstrap(&config.Inbound{DefaultPolicy: config.PolicyAllUnauthenticated})))
	if d := c.Request(get("/"), dst, Client{Addr: inCluster, ID: idB}); d.Verdict != Denied {
		t.Fatalf("after the control plane's policy: %+v", d)
	}
	if d := c.Request(get("/"), dst, Client{Addr: inCluster, ID: idA}); d.Verdict != Allowed {
		t.Fatalf("allowed identity: %+v", d)
	}
	var b strings.Builder
	reg.WriteText(&b)
	text := b.String()
	for _, want := range []string{
		`inbound_http_authz_allow_total{target_addr="10.1.1.1:8080",srv_group="",srv_kind="default",srv_name="all-unauthenticated",route_group="",route_kind="default",route_name="default",authz_group="",authz_kind="default",authz_name="all-unauthenticated",tls="no_identity",no_tls_reason="no_tls_from_remote"} 1`,
		`inbound_http_authz_allow_total{target_addr="10.1.1.1:8080",srv_group="policy.weft.dev",srv_kind="Server",srv_name="web",route_group="",route_kind="default",route_name="default",authz_group="policy.weft.dev",authz_kind="AuthorizationPolicy",authz_name="only-a",tls="true",client_id="` + idA + `"} 1`,
		`inbound_http_authz_deny_total{target_addr="10.1.1.1:8080",srv_group="policy.weft.dev",srv_kind="Server",srv_name="web",route_group="",route_kind="default",route_name="default",tls="true",client_id="` + idB + `"} 1`,
		`inbound_tcp_authz_allow_total{target_addr="10.1.1.1:8080",srv_group="",srv_kind="default",srv_name="all-unauthenticated",authz_group="",authz_kind="default",authz_name="all-unauthenticated",tls="true",client_id="` + idB + `"} 1`,
		`inbound_tcp_authz_terminate_total{target_addr="10.1.1.1:8080",srv_group="policy.weft.dev",srv_kind="Server",srv_name="web",tls="true",client_id="` + idB + `"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s\nin:\n%s", want, text)
		}
	}
}

// TestAuthzSeriesBounded: clients choosing identities and ports cannot grow the
// series past the bound; what is past it is counted under "overflow".
func TestAuthzSeriesBounded(t *testing.T) {
	reg := metrics.New()
	c := &Checker{Log: logr.Discard(), Metrics: reg}
	c.SetBootstrap(Compile(Bootstrap(&config.Inbound{DefaultPolicy: config.PolicyAllAuthenticated})))
	n := metrics.MaxAuthzSeries + 500
	for i := range n {
		c.Connection(netip.AddrPortFrom(inCluster, uint16(1000+i)), Client{Addr: inCluster, ID: idA})
	}
	var b strings.Builder
	reg.WriteText(&b)
	lines := strings.Count(b.String(), "\ninbound_tcp_authz_allow_total{")
	if lines > metrics.MaxAuthzSeries+1 {
		t.Fatalf("%d series, want at most %d", lines, metrics.MaxAuthzSeries+1)
	}
	if !strings.Contains(b.String(), `target_addr="overflow"`) || !strings.Contains(b.String(), "weft_inbound_authz_series_overflow_total 500") {
		t.Fatal("overflow not counted")
	}
}

// TestAllowPathDoesNotAllocate: a decision that admits, counted in its (existing)
// series, allocates nothing: it runs for every request.
func TestAllowPathDoesNotAllocate(t *testing.T) {
	c, r, dst, cl := benchSetup()
	c.Request(r, dst, cl) // creates the series
	if n := testing.AllocsPerRun(200, func() {
		if c.Request(r, dst, cl).Verdict != Allowed {
			t.Fatal("denied")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per allowed request", n)
	}
	if n := testing.AllocsPerRun(200, func() { c.Connection(dst, cl) }); n != 0 {
		t.Fatalf("%v allocations per allowed connection", n)
	}
}

// benchSetup is a realistic server: two routes, a network-and-identity authorization
// that does not admit the client, and one that does.
func benchSetup() (*Checker, *http.Request, netip.AddrPort, Client) {
	c := &Checker{Log: logr.Discard(), Metrics: metrics.New()}
	c.SetPolicy(Compile(onePort(&api.InboundServer{
		Routes: []*api.InboundRoute{
			{Ref: ref("HTTPRoute", "admin"), Matches: []*api.RouteMatch{{Path: &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: "/admin"}}}}},
			{Ref: ref("HTTPRoute", "api"), Matches: []*api.RouteMatch{{Path: &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: "/api"}}, Method: "GET"}}},
		},
		Authorizations: []*api.Authorization{
			authz("ops", []*api.NetworkSet{nets("192.168.0.0/16")}, []*api.IdentitySet{ids(exactID(idX))}),
			authz("shop", []*api.NetworkSet{nets("10.0.0.0/8 except 10.9.0.0/16", "fd00::/8")}, []*api.IdentitySet{ids(prefixID("spiffe://cluster.local/ns/shop/sa/"))}),
		},
		ProbePaths: []string{"/healthz"},
	})))
	return c, get("/api/items"), netip.MustParseAddrPort("10.1.1.1:8080"), Client{Addr: inCluster, ID: idA}
}

func BenchmarkRequestAllowed(b *testing.B) {
	c, r, dst, cl := benchSetup()
	b.ReportAllocs()
	for b.Loop() {
		c.Request(r, dst, cl)
	}
}

func BenchmarkConnectionAllowed(b *testing.B) {
	c, _, dst, cl := benchSetup()
	b.ReportAllocs()
	for b.Loop() {
		c.Connection(dst, cl)
	}
}

// FuzzCompile: any message the control plane (or something posing as it) could send
// compiles without panicking, and the decisions on it run; a bad part is reported.
func FuzzCompile(f *testing.F) {
	for _, m := range []*api.InboundPolicy{
		Bootstrap(&config.Inbound{DefaultPolicy: config.PolicyClusterAuthenticated, ProbePaths: []config.ProbePath{{Port: 80, Path: "/h"}}}),
		onePort(&api.InboundServer{Authorizations: []*api.Authorization{authz("x", []*api.NetworkSet{nets("10.0.0.0/8 except 10.1.0.0/16")}, []*api.IdentitySet{ids(prefixID("spiffe://td/ns/a/"))})},
			Routes: []*api.InboundRoute{{Matches: []*api.RouteMatch{{Path: &api.StringMatch{Kind: &api.StringMatch_Regex{Regex: "/a.*"}}}}}}}),
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msg := &api.InboundPolicy{}
		if proto.Unmarshal(b, msg) != nil {
			return
		}
		p := Compile(msg)
		for _, port := range []uint16{0, 80, 8080} {
			s := p.Server(port)
			if s == nil {
				t.Fatal("no server")
			}
			for _, cl := range []Client{{}, {Addr: inCluster, ID: idA}} {
				s.Connection(cl)
				s.Request(get("/a/b?x=1"), cl)
			}
		}
	})
}

// BenchmarkDecisionOnly is BenchmarkRequestAllowed without the metric: the cost of
// the decision itself.
func BenchmarkDecisionOnly(b *testing.B) {
	c, r, _, cl := benchSetup()
	s := c.Policy().Server(8080)
	b.ReportAllocs()
	for b.Loop() {
		s.Request(r, cl)
	}
}

// TestDenialLogRateLimited: a denial is logged with the client's identity and address
// at the default level at most once a second (clients cause denials at will); the
// others go to verbosity 1.
func TestDenialLogRateLimited(t *testing.T) {
	var lines []string
	log := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: 0})
	c := &Checker{Log: log, Metrics: metrics.New()}
	c.SetPolicy(Compile(onePort(&api.InboundServer{Authorizations: []*api.Authorization{authz("only-a", nil, []*api.IdentitySet{ids(exactID(idA))})}})))
	dst := netip.MustParseAddrPort("10.1.1.1:8080")
	for range 100 {
		c.Request(get("/"), dst, Client{Addr: inCluster, ID: idB})
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"client"="`+idB+`"`) || !strings.Contains(lines[0], `"clientAddr"="10.1.2.3"`) ||
		!strings.Contains(lines[0], "policy.weft.dev/Server/web") {
		t.Fatalf("logged %d lines at the default level, want 1 naming the client, its address and the server: %q", len(lines), lines)
	}
}

// TestProblemsLoggedOncePerVersion: a part that does not compile is logged when its
// version is installed, not again when the same version arrives again (a
// resubscription), and again for a new version.
func TestProblemsLoggedOncePerVersion(t *testing.T) {
	var lines []string
	log := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: 0})
	c := &Checker{Log: log, Metrics: metrics.New()}
	bad := func(version string) *Policy {
		m := onePort(&api.InboundServer{Authorizations: []*api.Authorization{authz("bad", []*api.NetworkSet{nets("10.0.0.0/40")}, nil)}})
		m.Version = version
		return Compile(m)
	}
	c.SetPolicy(bad("v1"))
	c.SetPolicy(bad("v1"))
	if len(lines) != 1 || !strings.Contains(lines[0], "10.0.0.0/40") || !strings.Contains(lines[0], "admits no one") {
		t.Fatalf("after v1 twice: %q", lines)
	}
	c.SetPolicy(bad("v2"))
	if len(lines) != 2 {
		t.Fatalf("after v2: %q", lines)
	}
}

func BenchmarkRequestDenied(b *testing.B) {
	c, r, dst, _ := benchSetup()
	cl := Client{Addr: outCluster, ID: idX}
	b.ReportAllocs()
	for b.Loop() {
		c.Request(r, dst, cl)
	}
}
