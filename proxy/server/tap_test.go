package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/server"
	"github.com/weftmesh/weft/proxy/tap"
)

// tapID is the control plane's tap identity in the tests' trust domain.
var tapID = meshdefaults.TapIdentity(trustDomain, "weft-system")

// tapPair is a client proxy A and a server proxy B, each with a tap server on
// loopback, in front of go-httpbin and grpc-go's interop server.
type tapPair struct {
	ca            *testpki.CA
	a, b          *proxy
	tapA, tapB    string // the tap servers' addresses
	httpbin, grpc string // what the app dials (A's outbound listeners)
	probe         string
	tA, tB        *tap.Tap
	idA, idB      string
}

func newTapPair(t *testing.T, writeTimeout time.Duration) *tapPair {
	t.Helper()
	ca := testpki.NewCA(t, "weft test anchor")
	be := startBackends(t)
	tp := &tapPair{ca: ca, idA: spiffe("a", clientSA), idB: spiffe("b", serverSA)}
	storeB := newStore(t, ca.IssueValid(t, tp.idB), ca)
	tp.tB = tap.New(tap.Self{Pod: "server-0", Namespace: "b", Identity: func() string { return tp.idB }})
	tp.b = startProxy(t, &config.Config{}, storeB, func(o *server.Options) { o.Tap = tp.tB })
	tp.tapB = serveTap(t, &tap.Server{Tap: tp.tB, Identity: storeB, ClientID: tapID, Log: logger(t), WriteTimeout: writeTimeout})

	dest := func(svc, backend string) config.Destination {
		return config.Destination{Name: svc, Addresses: []string{svc}, Endpoints: []config.Endpoint{endpoint(backend, tp.b, tp.idB)}}
	}
	aCfg := &config.Config{DetectTimeout: config.Duration{Duration: detectTimeout}, Destinations: []config.Destination{
		dest(svcHTTPBin, be.httpbin), dest(svcGRPC, be.grpc), dest(svcProbe, be.probe)}}
	storeA := newStore(t, ca.IssueValid(t, tp.idA), ca)
	tp.tA = tap.New(tap.Self{Pod: "client-0", Namespace: "a", Identity: func() string { return tp.idA }})
	tp.a = startProxy(t, aCfg, storeA, func(o *server.Options) { o.Tap = tp.tA })
	tp.tapA = serveTap(t, &tap.Server{Tap: tp.tA, Identity: storeA, ClientID: tapID, Log: logger(t), WriteTimeout: writeTimeout})
	tp.httpbin = tp.a.outbound(svcHTTPBin)
	tp.grpc = tp.a.outbound(svcGRPC)
	tp.probe = tp.a.outbound(svcProbe)
	go func() {
		// The probe backend reports every request; nobody here reads them.
		for range be.probeSeen {
		}
	}()
	return tp
}

func serveTap(t *testing.T, s *tap.Server) string {
	ln := listen(t)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("tap server shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("tap server: %v", err)
		}
	})
	return ln.Addr().String()
}

// tapClient dials a tap server as the control plane does: grpc-go, mTLS with leaf
// (nil: no client certificate), the server held to the proxy's SPIFFE ID.
func tapClient(t *testing.T, addr, serverID string, leaf *testpki.Leaf, roots *testpki.CA) apigrpc.TapClient {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(roots.Cert)
	cfg := peertls.ClientConfig(peertls.ClientOptions{
		ServerName: serverID,
		Roots:      func() *x509.CertPool { return pool },
		Certificate: func() *tls.Certificate {
			if leaf == nil {
				return nil
			}
			return &leaf.TLS
		},
	})
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return apigrpc.NewTapClient(cc)
}

// observe opens a stream and collects its events in the background.
type observed struct {
	mu     sync.Mutex
	events []*api.TapEvent
	err    error
	done   chan struct{}
}

func observe(t *testing.T, c apigrpc.TapClient, req *api.ObserveRequest) (*observed, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := c.Observe(ctx, req)
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	o := &observed{done: make(chan struct{})}
	go func() {
		defer close(o.done)
		for {
			ev, err := st.Recv()
			o.mu.Lock()
			if err != nil {
				o.err = err
				o.mu.Unlock()
				return
			}
			o.events = append(o.events, ev)
			o.mu.Unlock()
		}
	}()
	return o, cancel
}

func (o *observed) snapshot() []*api.TapEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*api.TapEvent(nil), o.events...)
}

// waitStreams waits until the tap of p's metrics reports n open streams: an Observe
// call returns before the proxy registered it.
func waitStreams(t *testing.T, tt *tap.Tap, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var b strings.Builder
		tt.WriteMetrics(&b)
		if strings.Contains(b.String(), fmt.Sprintf("\nweft_tap_streams %d\n", n)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap streams never reached %d:\n%s", n, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exchange groups one request's events by kind.
type exchange struct {
	init *api.TapEvent
	resp *api.TapEvent
	end  *api.TapEvent
}

func byID(events []*api.TapEvent) map[uint64]*exchange {
	out := map[uint64]*exchange{}
	for _, ev := range events {
		x := out[ev.GetId()]
		if x == nil {
			x = &exchange{}
			out[ev.GetId()] = x
		}
		switch ev.GetEvent().(type) {
		case *api.TapEvent_RequestInit:
			x.init = ev
		case *api.TapEvent_ResponseInit:
			x.resp = ev
		case *api.TapEvent_ResponseEnd:
			x.end = ev
		}
	}
	return out
}

// waitExchanges waits for n complete exchanges (all three events) on o.
func waitExchanges(t *testing.T, o *observed, n int) map[uint64]*exchange {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		xs := byID(o.snapshot())
		complete := 0
		for _, x := range xs {
			if x.init != nil && x.end != nil {
				complete++
			}
		}
		if complete >= n {
			return xs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d complete exchanges, want %d (stream error %v)", complete, n, o.err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func labelsOf(p *api.TapPeer) map[string]string {
	m := map[string]string{}
	for _, l := range p.GetLabels() {
		m[l.GetName()] = l.GetValue()
	}
	return m
}

// TestTapEvents taps both proxies of a pair with a real grpc-go client holding the
// tap identity, sends an HTTP/1.1, an HTTP/2 and a gRPC request, and checks every
// field of the events on both sides.
func TestTapEvents(t *testing.T) {
	tp := newTapPair(t, 0)
	tapLeaf := tp.ca.IssueValid(t, tapID)
	outA, _ := observe(t, tapClient(t, tp.tapA, tp.idA, tapLeaf, tp.ca), &api.ObserveRequest{})
	inB, _ := observe(t, tapClient(t, tp.tapB, tp.idB, tapLeaf, tp.ca), &api.ObserveRequest{})
	waitStreams(t, tp.tA, 1)
	waitStreams(t, tp.tB, 1)

	// HTTP/1.1, with a query string the tap must not reveal and a body.
	resp, err := h1Client().Post("http://"+tp.httpbin+"/anything/one?secret=s3cr3t", "text/plain", strings.NewReader("hello tap"))
	if err != nil {
		t.Fatal(err)
	}
	h1Body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// HTTP/2 (h2c prior knowledge from the app).
	resp, err = h2cClient().Get("http://" + tp.httpbin + "/status/418")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// gRPC: a unary call that fails with a status the app chose.
	cc, err := grpc.NewClient("passthrough:///"+tp.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, gerr := testgrpc.NewTestServiceClient(cc).UnaryCall(context.Background(), &testgrpc.SimpleRequest{
		ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "nope"}})
	if status.Code(gerr) != codes.NotFound {
		t.Fatalf("gRPC call: %v", gerr)
	}

	check := func(t *testing.T, o *observed, dir api.TapDirection) {
		xs := waitExchanges(t, o, 3)
		seen := map[string]bool{}
		for id, x := range xs {
			ri := x.init.GetRequestInit()
			if ri == nil || x.resp == nil || x.end == nil {
				t.Fatalf("exchange %d incomplete: %+v", id, x)
			}
			for _, ev := range []*api.TapEvent{x.init, x.resp, x.end} {
				if ev.GetDirection() != dir {
					t.Errorf("event direction %v, want %v", ev.GetDirection(), dir)
				}
				if ev.GetSource().GetIdentity() != tp.idA || ev.GetDestination().GetIdentity() != tp.idB {
					t.Errorf("peers %q -> %q, want %q -> %q", ev.GetSource().GetIdentity(), ev.GetDestination().GetIdentity(), tp.idA, tp.idB)
				}
				if ev.GetTime() == nil {
					t.Error("event without time")
				}
			}
			src, dst := labelsOf(x.init.GetSource()), labelsOf(x.init.GetDestination())
			if src["namespace"] != "a" || src["serviceaccount"] != clientSA || dst["namespace"] != "b" || dst["serviceaccount"] != serverSA {
				t.Errorf("labels %v -> %v", src, dst)
			}
			if dir == api.TapDirection_TAP_DIRECTION_OUTBOUND && (src["pod"] != "client-0" || x.init.GetSource().GetAddress() == "") {
				t.Errorf("outbound source %v at %q, want the proxy's own pod and the app's address", src, x.init.GetSource().GetAddress())
			}
			if dir == api.TapDirection_TAP_DIRECTION_INBOUND && dst["pod"] != "server-0" {
				t.Errorf("inbound destination %v, want the proxy's own pod", dst)
			}
			if !ri.GetTls() || ri.GetScheme() != "http" {
				t.Errorf("tls %v scheme %q", ri.GetTls(), ri.GetScheme())
			}
			end := x.end.GetResponseEnd()
			if end.GetSinceRequestInit().AsDuration() <= 0 || end.GetSinceRequestInit().AsDuration() < x.resp.GetResponseInit().GetSinceRequestInit().AsDuration() {
				t.Errorf("latencies: head %v end %v", x.resp.GetResponseInit().GetSinceRequestInit().AsDuration(), end.GetSinceRequestInit().AsDuration())
			}
			switch ri.GetProtocol() {
			case tap.ProtoHTTP1:
				seen["h1"] = true
				if ri.GetMethod() != "POST" || ri.GetPath() != "/anything/one" || !strings.HasPrefix(ri.GetAuthority(), "127.0.0.1:") {
					t.Errorf("HTTP/1.1 request_init %v", ri)
				}
				if x.resp.GetResponseInit().GetHttpStatus() != 200 || end.GetRequestBytes() != uint64(len("hello tap")) || end.GetResponseBytes() != uint64(len(h1Body)) || end.GrpcStatus != nil || end.GetError() != "" {
					t.Errorf("HTTP/1.1 response: %v %v (body %d bytes)", x.resp, end, len(h1Body))
				}
			case tap.ProtoHTTP2:
				seen["h2"] = true
				if ri.GetMethod() != "GET" || ri.GetPath() != "/status/418" || x.resp.GetResponseInit().GetHttpStatus() != 418 {
					t.Errorf("HTTP/2 exchange %v %v", ri, x.resp)
				}
			case tap.ProtoGRPC:
				seen["grpc"] = true
				if ri.GetPath() != "/grpc.testing.TestService/UnaryCall" || end.GrpcStatus == nil || end.GetGrpcStatus() != uint32(codes.NotFound) || end.GetRequestBytes() == 0 {
					t.Errorf("gRPC exchange %v %v", ri, end)
				}
				// A static destination's fallback route: the Service's.
				if want := "Service/static/" + svcGRPC; dir == api.TapDirection_TAP_DIRECTION_OUTBOUND && ri.GetRoute() != want {
					t.Errorf("outbound gRPC route %q, want %q", ri.GetRoute(), want)
				}
			default:
				t.Errorf("protocol %q", ri.GetProtocol())
			}
			for _, ev := range []*api.TapEvent{x.init, x.resp, x.end} {
				if s := ev.String(); strings.Contains(s, "s3cr3t") || strings.Contains(s, "hello tap") {
					t.Errorf("an event reveals the query or the body: %s", s)
				}
			}
		}
		if len(seen) != 3 {
			t.Errorf("protocols seen %v, want HTTP/1.1, HTTP/2 and gRPC", seen)
		}
	}
	t.Run("outbound", func(t *testing.T) { check(t, outA, api.TapDirection_TAP_DIRECTION_OUTBOUND) })
	t.Run("inbound", func(t *testing.T) { check(t, inB, api.TapDirection_TAP_DIRECTION_INBOUND) })
}
