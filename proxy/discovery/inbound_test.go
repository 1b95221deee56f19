package discovery

import (
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// fakeInbound is an InboundPolicies service on a real grpc-go server: each Watch
// is handed to the test, which decides what to send or how to end it.
type fakeInbound struct {
	apigrpc.UnimplementedInboundPoliciesServer
	watches chan *fakeWatch
}

type fakeWatch struct {
	req  *api.WatchInbound
	conn string // the client's address: one per connection
	send chan *api.InboundPolicy
	end  chan error // the handler returns this
}

func (f *fakeInbound) Watch(req *api.WatchInbound, stream grpc.ServerStreamingServer[api.InboundPolicy]) error {
	w := &fakeWatch{req: req, send: make(chan *api.InboundPolicy, 16), end: make(chan error, 1)}
	if p, ok := peer.FromContext(stream.Context()); ok {
		w.conn = p.Addr.String()
	}
	f.watches <- w
	for {
		select {
		case m := <-w.send:
			if err := stream.Send(m); err != nil {
				return err
			}
		case err := <-w.end:
			return err
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (f *fakeInbound) next(t *testing.T) *fakeWatch {
	t.Helper()
	select {
	case w := <-f.watches:
		return w
	case <-time.After(5 * time.Second):
		t.Fatal("no Watch stream was opened within 5s")
		return nil
	}
}

// serveBoth runs the destination and inbound policy services on one grpc-go
// server, as weft-controller does, with the same mTLS.
func serveBoth(t *testing.T, p *testPKI, addr string) (*fakeDest, *fakeInbound, *grpc.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDest{opened: make(chan *fakeStream, 100)}
	fi := &fakeInbound{watches: make(chan *fakeWatch, 100)}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
	})))
	apigrpc.RegisterDestinationServer(s, f)
	apigrpc.RegisterInboundPoliciesServer(s, fi)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return f, fi, s, ln.Addr().String()
}

// applied records the policies the client hands over.
type applied struct {
	mu   sync.Mutex
	got  []string
	seen chan string
}

func newApplied() *applied { return &applied{seen: make(chan string, 100)} }

func (a *applied) apply(p *api.InboundPolicy) {
	a.mu.Lock()
	a.got = append(a.got, p.GetVersion())
	a.mu.Unlock()
	a.seen <- p.GetVersion()
}

func (a *applied) wait(t *testing.T, version string) {
	t.Helper()
	select {
	case v := <-a.seen:
		if v != version {
			t.Fatalf("applied version %q, want %q", v, version)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("version %q not applied within 5s", version)
	}
}

func (a *applied) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case v := <-a.seen:
		t.Fatalf("unexpected policy %q applied", v)
	case <-time.After(d):
	}
}

func policy(version string) *api.InboundPolicy {
	return &api.InboundPolicy{Version: version, DefaultServer: &api.InboundServer{Ref: &api.PolicyRef{Kind: "default", Name: "deny"}}}
}

func metricsOf(t *testing.T, c *Client) string {
	t.Helper()
	var b strings.Builder
	if err := c.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestWatchInbound: one Watch stream for the pod, on the same connection as the
// destination lookups; each new version is applied once.
func TestWatchInbound(t *testing.T) {
	p := newPKI(t)
	f, fi, _, addr := serveBoth(t, p, "127.0.0.1:0")
	c := newClient(t, p, addr, nil)
	a := newApplied()

	first := lookupAsync(c, Target{Authority: webAuthority})
	fs := f.next(t)
	fs.snapshot(compiled(t, "10.0.0.1"))
	<-first

	c.WatchInbound("web-0", a.apply)
	c.WatchInbound("web-0", a.apply) // a second call does nothing
	w := fi.next(t)
	if w.req.GetNamespace() != "shop" || w.req.GetPod() != "web-0" {
		t.Fatalf("request %v", w.req)
	}
	if w.conn != fs.conn {
		t.Fatalf("the Watch stream came on connection %s, the destination's on %s: want one connection", w.conn, fs.conn)
	}
	if !strings.Contains(metricsOf(t, c), `weft_inbound_policy_info{version="bootstrap"} 1`) {
		t.Fatalf("before the first message:\n%s", metricsOf(t, c))
	}
	w.send <- policy("v1")
	a.wait(t, "v1")
	w.send <- policy("v1") // the same version again: nothing to apply
	w.send <- policy("v2")
	a.wait(t, "v2")
	a.none(t, 50*time.Millisecond)
	text := metricsOf(t, c)
	for _, want := range []string{`weft_inbound_policy_info{version="v2"} 1`, "weft_inbound_policy_updates_total 3\n",
		"weft_inbound_policy_stream_open 1\n", "weft_inbound_policy_resubscriptions_total 0\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	select {
	case extra := <-fi.watches:
		t.Fatalf("a second Watch stream: %v", extra.req)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestWatchInboundRetries: NotFound (the pod not in the control plane's cache yet)
// and a broken stream are retried with backoff; the last policy stays in force in
// between (nothing else is applied), and the control plane's next answer is.
func TestWatchInboundRetries(t *testing.T) {
	p := newPKI(t)
	_, fi, srv, addr := serveBoth(t, p, "127.0.0.1:0")
	c := newClient(t, p, addr, nil)
	a := newApplied()
	c.WatchInbound("web-0", a.apply)

	fi.next(t).end <- status.Error(codes.NotFound, "no pod shop/web-0")
	w := fi.next(t)
	w.send <- policy("v1")
	a.wait(t, "v1")

	// The control plane goes away: the proxy keeps v1 and resubscribes.
	srv.Stop()
	eventually(t, "the stream is seen closed", 5*time.Second, func() bool {
		return strings.Contains(metricsOf(t, c), "weft_inbound_policy_stream_open 0\n")
	})
	a.none(t, 300*time.Millisecond)
	if !strings.Contains(metricsOf(t, c), `weft_inbound_policy_info{version="v1"} 1`) {
		t.Fatal("the last policy is no longer reported in force")
	}
	// It comes back on the same address: the stream is reopened and its
	// (unchanged) policy not applied again, then a new one is.
	_, fi2, _, _ := serveBoth(t, p, addr)
	w2 := fi2.next(t)
	w2.send <- policy("v1")
	w2.send <- policy("v3")
	a.wait(t, "v3")
	if s := metricsOf(t, c); !strings.Contains(s, "weft_inbound_policy_stream_open 1\n") || strings.Contains(s, "weft_inbound_policy_resubscriptions_total 0\n") {
		t.Fatalf("after the control plane came back:\n%s", s)
	}
}

// TestWatchInboundMessageBound: a message past maxInboundMessage ends the stream
// instead of being read into memory; the proxy keeps its policy and resubscribes.
func TestWatchInboundMessageBound(t *testing.T) {
	p := newPKI(t)
	_, fi, _, addr := serveBoth(t, p, "127.0.0.1:0")
	c := newClient(t, p, addr, nil)
	a := newApplied()
	c.WatchInbound("web-0", a.apply)
	w := fi.next(t)
	big := policy("big")
	big.DefaultServer.ProbePaths = []string{"/" + strings.Repeat("x", maxInboundMessage)}
	w.send <- big
	w2 := fi.next(t) // resubscribed
	a.none(t, 100*time.Millisecond)
	w2.send <- policy("v1")
	a.wait(t, "v1")
}
