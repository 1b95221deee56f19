package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/discovery"
)

// The inbound policy (issue 16) through a meshed pair over real sockets: proxy A's
// app calls B's backends, A's certificate is spiffe("a", clientSA), and B enforces
// the policy its test sets, as the control plane would send it.

func serverRef(name string) *api.PolicyRef {
	return &api.PolicyRef{Group: "policy.weft.dev", Kind: "Server", Name: name}
}

// admitOnly is an authorization admitting exactly one identity.
func admitOnly(name, id string) *api.Authorization {
	return &api.Authorization{Ref: &api.PolicyRef{Group: "policy.weft.dev", Kind: "AuthorizationPolicy", Name: name},
		Identities: []*api.IdentitySet{{Matches: []*api.IdentityMatch{{Kind: &api.IdentityMatch_Exact{Exact: id}}}}}}
}

// denyAllBut is a policy denying every port but the servers given.
func denyAllBut(version string, servers ...*api.InboundServer) *api.InboundPolicy {
	return &api.InboundPolicy{Version: version, DefaultServer: &api.InboundServer{Ref: &api.PolicyRef{Kind: "default", Name: "deny"}}, Servers: servers}
}

func portServer(name, backend string, authz ...*api.Authorization) *api.InboundServer {
	return &api.InboundServer{Port: uint32(mustPort(backend)), Ref: serverRef(name), Authorizations: authz}
}

var otherClient = spiffe("a", "someone-else")

// TestAuthzByIdentity: the identity a server's authorization names passes; another
// is denied with 403 naming the server (HTTP), PERMISSION_DENIED (gRPC, from a real
// grpc-go client) or a closed connection (opaque TCP); and a policy change applies
// to the next request of a connection that is already open.
func TestAuthzByIdentity(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	me := spiffe("a", clientSA)
	mp.b.srv.SetInboundPolicy(denyAllBut("v1",
		portServer("web", mp.be.httpbin, admitOnly("web-clients", me)),
		portServer("grpc", mp.be.grpc, admitOnly("grpc-clients", otherClient)),
		portServer("tcp", mp.be.tcp, admitOnly("tcp-clients", otherClient)),
	))

	// One keep-alive connection from the app, and the pooled weft.h2 one A->B.
	c := h1Client()
	var reused []bool
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+mp.addr[svcHTTPBin]+path, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/status/200"); code != 200 {
		t.Fatalf("allowed identity: %d %q", code, body)
	}
	peerConns := metricValue(mp.b.metricsText(), "tcp_open_total", `direction="inbound"`, `peer="src"`, `client_id="`+me+`"`)

	mp.b.srv.SetInboundPolicy(denyAllBut("v2",
		portServer("web", mp.be.httpbin, admitOnly("web-clients", otherClient)),
		portServer("grpc", mp.be.grpc, admitOnly("grpc-clients", otherClient)),
		portServer("tcp", mp.be.tcp, admitOnly("tcp-clients", otherClient)),
	))
	code, body := get("/status/200")
	if code != http.StatusForbidden || !strings.Contains(body, "policy.weft.dev/Server/web") || !strings.Contains(body, me) {
		t.Fatalf("after the policy change: %d %q, want 403 naming the server and the client", code, body)
	}
	if len(reused) != 2 || !reused[1] {
		t.Fatalf("the second request did not reuse the app's connection: %v", reused)
	}
	if n := metricValue(mp.b.metricsText(), "tcp_open_total", `direction="inbound"`, `peer="src"`, `client_id="`+me+`"`); n != peerConns {
		t.Fatalf("B accepted %v connections from A, then %v: the change must apply on the open one", peerConns, n)
	}
	text := mp.b.metricsText()
	if v := metricValue(text, "inbound_http_authz_allow_total", `srv_name="web"`, `authz_name="web-clients"`, `tls="true"`, `client_id="`+me+`"`); v != 1 {
		t.Errorf("inbound_http_authz_allow_total = %v, want 1\n%s", v, text)
	}
	if v := metricValue(text, "inbound_http_authz_deny_total", `srv_name="web"`, `route_kind="default"`, `client_id="`+me+`"`); v != 1 {
		t.Errorf("inbound_http_authz_deny_total = %v, want 1", v)
	}

	t.Run("gRPC PERMISSION_DENIED", func(t *testing.T) {
		cc, err := grpc.NewClient("passthrough:///"+mp.addr[svcGRPC], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = testgrpc.NewTestServiceClient(cc).EmptyCall(ctx, &testgrpc.Empty{})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "policy.weft.dev/Server/grpc") {
			t.Fatalf("denied gRPC call: %v, want PermissionDenied naming the server", err)
		}
	})

	t.Run("opaque TCP closed", func(t *testing.T) {
		tcpCall := func() string {
			conn, err := net.Dial("tcp", mp.addr[svcTCP])
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, "hello")
			conn.(*net.TCPConn).CloseWrite()
			got, _ := io.ReadAll(conn)
			return string(got)
		}
		if got := tcpCall(); got != "" {
			t.Fatalf("denied connection answered %q", got)
		}
		if v := metricValue(mp.b.metricsText(), "inbound_tcp_authz_deny_total", `srv_name="tcp"`, `client_id="`+me+`"`); v != 1 {
			t.Fatalf("inbound_tcp_authz_deny_total = %v, want 1", v)
		}
		mp.b.srv.SetInboundPolicy(denyAllBut("v3", portServer("tcp", mp.be.tcp, admitOnly("tcp-clients", me))))
		if got := tcpCall(); !strings.Contains(got, "HELLO") {
			t.Fatalf("allowed connection answered %q", got)
		}
		if v := metricValue(mp.b.metricsText(), "inbound_tcp_authz_allow_total", `srv_name="tcp"`, `authz_name="tcp-clients"`, `client_id="`+me+`"`); v != 1 {
			t.Fatalf("inbound_tcp_authz_allow_total = %v, want 1", v)
		}

		// An open connection the next policy no longer admits is closed.
		conn, err := net.Dial("tcp", mp.addr[svcTCP])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "still open")
		deadline := time.Now().Add(5 * time.Second)
		for metricValue(mp.b.metricsText(), "inbound_tcp_authz_allow_total", `srv_name="tcp"`, `client_id="`+me+`"`) != 2 {
			if time.Now().After(deadline) {
				t.Fatal("the second connection was not authorized")
			}
			time.Sleep(5 * time.Millisecond)
		}
		mp.b.srv.SetInboundPolicy(denyAllBut("v4", portServer("tcp", mp.be.tcp, admitOnly("tcp-clients", otherClient))))
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("revoked connection not closed: %v", err)
		}
		if v := metricValue(mp.b.metricsText(), "inbound_tcp_authz_terminate_total", `srv_name="tcp"`, `client_id="`+me+`"`); v != 1 {
			t.Fatalf("inbound_tcp_authz_terminate_total = %v, want 1", v)
		}
	})
}

// TestAuthzRoutes: one route admits identity A, another admits someone else only,
// and a request no route matches is 404.
func TestAuthzRoutes(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	me := spiffe("a", clientSA)
	route := func(name, prefix string, authz ...*api.Authorization) *api.InboundRoute {
		return &api.InboundRoute{Ref: &api.PolicyRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: name},
			Matches:        []*api.RouteMatch{{Path: &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: prefix}}}},
			Authorizations: authz}
	}
	srv := portServer("web", mp.be.httpbin)
	srv.Routes = []*api.InboundRoute{route("status", "/status", admitOnly("mine", me)), route("anything", "/anything", admitOnly("theirs", otherClient))}
	mp.b.srv.SetInboundPolicy(denyAllBut("v1", srv))
	for _, tt := range []struct {
		path string
		want int
	}{{"/status/200", 200}, {"/anything/x", 403}, {"/get", 404}} {
		resp, err := h1Client().Get("http://" + mp.addr[svcHTTPBin] + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.path, resp.StatusCode, tt.want)
		}
	}
	text := mp.b.metricsText()
	if v := metricValue(text, "inbound_http_authz_allow_total", `route_kind="HTTPRoute"`, `route_name="status"`, `authz_name="mine"`); v != 1 {
		t.Errorf("route allow = %v", v)
	}
	if v := metricValue(text, "inbound_http_authz_deny_total", `route_name="anything"`); v != 1 {
		t.Errorf("route deny = %v", v)
	}
	if v := metricValue(text, "inbound_http_route_not_found_total", `srv_name="web"`); v != 1 {
		t.Errorf("route not found = %v", v)
	}
}

// TestAuthzProbesAndAudit: under deny the kubelet's probe paths still pass in
// plaintext, and nothing else does; under audit everything passes and is counted as
// authz "audit".
func TestAuthzProbesAndAudit(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	port := mustPort(mp.be.httpbin)
	cfg := &config.Config{Inbound: config.Inbound{DefaultPolicy: config.PolicyDeny, ProbePaths: []config.ProbePath{{Port: port, Path: "/status/204"}}}}
	cfg.ApplyDefaults()
	mp.b.srv.SetConfig(cfg) // the bootstrap policy, as WEFT_INBOUND_PROBE_PATHS gives it
	plain := mp.b.inboundPlain(mp.be.httpbin)
	status := func(method, path string) int {
		req, _ := http.NewRequest(method, "http://"+plain+path, nil)
		resp, err := h1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("GET", "/status/204"); got != 204 {
		t.Fatalf("probe under deny: %d", got)
	}
	if got := status("HEAD", "/status/204"); got != 204 {
		t.Fatalf("HEAD probe under deny: %d", got)
	}
	if got := status("POST", "/status/204"); got != 403 {
		t.Fatalf("POST to the probe path under deny: %d, want 403", got)
	}
	if got := status("GET", "/status/200"); got != 403 {
		t.Fatalf("other path under deny: %d, want 403", got)
	}
	if v := metricValue(mp.b.metricsText(), "inbound_http_authz_allow_total", `srv_name="deny"`, `authz_kind="default"`, `authz_name="probe"`, `tls="no_identity"`); v != 2 {
		t.Fatalf("probes counted %v, want 2", v)
	}

	mp.b.srv.SetInboundPolicy(&api.InboundPolicy{Version: "audit", DefaultServer: &api.InboundServer{
		Ref: &api.PolicyRef{Kind: "default", Name: "audit"}, Audit: true}})
	if got := status("GET", "/status/200"); got != 200 {
		t.Fatalf("plaintext under audit: %d", got)
	}
	resp, err := h1Client().Get("http://" + mp.addr[svcHTTPBin] + "/status/200")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("meshed under audit: %v %v", err, resp)
	}
	resp.Body.Close()
	text := mp.b.metricsText()
	if v := metricValue(text, "inbound_http_authz_allow_total", `srv_name="audit"`, `authz_name="audit"`, `tls="no_identity"`); v != 1 {
		t.Errorf("audited plaintext counted %v, want 1", v)
	}
	if v := metricValue(text, "inbound_http_authz_allow_total", `srv_name="audit"`, `authz_name="audit"`, `client_id="`+spiffe("a", clientSA)+`"`); v != 1 {
		t.Errorf("audited meshed request counted %v, want 1", v)
	}
}

// policyServer is a control plane's InboundPolicies service on a real grpc-go server,
// sending what the test puts in send.
type policyServer struct {
	apigrpc.UnimplementedInboundPoliciesServer
	send chan *api.InboundPolicy
}

func (p *policyServer) Watch(_ *api.WatchInbound, stream grpc.ServerStreamingServer[api.InboundPolicy]) error {
	for {
		select {
		case m := <-p.send:
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// TestAuthzPolicyKeptWithoutControlPlane: proxy B follows its pod's policy from a
// control plane (a real grpc-go server over mTLS, through the discovery client as
// weft-proxy wires it); when the control plane goes away B keeps enforcing the last
// policy, and does not fall back to its (open) bootstrap policy.
func TestAuthzPolicyKeptWithoutControlPlane(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	const name = "weft-destination.weft-system.svc"
	pool := x509.NewCertPool()
	pool.AddCert(mp.ca.Cert)
	ln := listen(t)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{mp.ca.IssueDNS(t, name).TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})))
	ps := &policyServer{send: make(chan *api.InboundPolicy, 4)}
	apigrpc.RegisterInboundPoliciesServer(gs, ps)
	go gs.Serve(ln)
	defer gs.Stop()

	dc := discovery.New(discovery.Options{Addr: ln.Addr().String(), ServerName: name, Namespace: "b", Identity: mp.b.store,
		Log: logger(t), MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	defer dc.Close()
	dc.WatchInbound("server-0", mp.b.srv.SetInboundPolicy)

	get := func() int {
		resp, err := h1Client().Get("http://" + mp.addr[svcHTTPBin] + "/status/200")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(); got != 200 {
		t.Fatalf("bootstrap (all-unauthenticated): %d", got)
	}
	ps.send <- denyAllBut("v1", portServer("web", mp.be.httpbin, admitOnly("others", otherClient)))
	deadline := time.Now().Add(5 * time.Second)
	for mp.b.srv.InboundPolicy().Version != "v1" {
		if time.Now().After(deadline) {
			t.Fatal("the control plane's policy was not installed within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := get(); got != 403 {
		t.Fatalf("under the control plane's policy: %d, want 403", got)
	}
	gs.Stop()
	var m strings.Builder
	for !strings.Contains(m.String(), "weft_inbound_policy_stream_open 0") {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatal("the stream was not seen closed")
		}
		time.Sleep(10 * time.Millisecond)
		m.Reset()
		dc.WriteMetrics(&m)
	}
	time.Sleep(200 * time.Millisecond) // a few resubscription attempts
	if got := get(); got != 403 {
		t.Fatalf("with the control plane gone: %d, want the last policy's 403", got)
	}
	if v := mp.b.srv.InboundPolicy().Version; v != "v1" {
		t.Fatalf("policy in force %q, want v1", v)
	}
}
