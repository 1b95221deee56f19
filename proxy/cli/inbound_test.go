package cli_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// inboundPolicies is a control plane's InboundPolicies service: it reports each
// Watch request and sends what the test queues.
type inboundPolicies struct {
	apigrpc.UnimplementedInboundPoliciesServer
	watched chan *api.WatchInbound
	send    chan *api.InboundPolicy
}

func (s *inboundPolicies) Watch(req *api.WatchInbound, stream grpc.ServerStreamingServer[api.InboundPolicy]) error {
	s.watched <- req
	for {
		select {
		case m := <-s.send:
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// TestBinaryWatchesInboundPolicy runs weft-proxy configured through the environment
// the injector sets (WEFT_DESTINATION_ADDR, POD_NAMESPACE, POD_NAME): it watches its
// pod's inbound policy over mTLS, enforces the bootstrap policy until the first
// message and the control plane's afterwards, and reports the version in /metrics.
func TestBinaryWatchesInboundPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProxy(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "anchor")
	certs := [3]string{}
	certs[0], certs[1], certs[2] = testpki.Files(t, dir, ca.IssueValid(t, "spiffe://weft.test/ns/shop/sa/web"), ca.PEM)

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{ca.IssueDNS(t, "localhost").TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})))
	ip := &inboundPolicies{watched: make(chan *api.WatchInbound, 4), send: make(chan *api.InboundPolicy, 4)}
	apigrpc.RegisterInboundPoliciesServer(gs, ip)
	go gs.Serve(ln)
	defer gs.Stop()

	app, _ := net.Listen("tcp", "127.0.0.1:0")
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })}
	go hs.Serve(app)
	defer hs.Close()

	t.Setenv("WEFT_DESTINATION_ADDR", fmt.Sprintf("localhost:%d", ln.Addr().(*net.TCPAddr).Port))
	t.Setenv("POD_NAMESPACE", "shop")
	t.Setenv("POD_NAME", "web-0")
	p := startProc(t, bin, dir, "web", "inbound: {originalDstOverride: \""+app.Addr().String()+"\"}\n", certs)
	status := func() int {
		resp, err := httpClient.Get(fmt.Sprintf("http://127.0.0.1:%d/", p.in))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	select {
	case req := <-ip.watched:
		if req.GetNamespace() != "shop" || req.GetPod() != "web-0" {
			t.Fatalf("Watch request %v, want shop/web-0", req)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy did not watch its inbound policy within 10s")
	}
	if got := status(); got != 200 {
		t.Fatalf("bootstrap policy (all-unauthenticated): %d", got)
	}
	ip.send <- &api.InboundPolicy{Version: "v1", DefaultServer: &api.InboundServer{Ref: &api.PolicyRef{Kind: "default", Name: "deny"}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, m := get(t, "GET", p.adminURL("/metrics"), "")
		if strings.Contains(m, `weft_inbound_policy_info{version="v1"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy v1 not reported in force:\n%s", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := status(); got != http.StatusForbidden {
		t.Fatalf("under the control plane's deny: %d, want 403", got)
	}
}
