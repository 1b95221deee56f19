package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

func newTapPair(t *testing.T, mods ...func(*tap.Server)) *tapPair {
	t.Helper()
	return newTapPairWith(t, &config.Config{}, mods...)
}

// newTapPairWith is newTapPair with B's configuration.
func newTapPairWith(t *testing.T, bCfg *config.Config, mods ...func(*tap.Server)) *tapPair {
	t.Helper()
	ca := testpki.NewCA(t, "weft test anchor")
	be := startBackends(t)
	tp := &tapPair{ca: ca, idA: spiffe("a", clientSA), idB: spiffe("b", serverSA)}
	storeB := newStore(t, ca.IssueValid(t, tp.idB), ca)
	tp.tB = tap.New(tap.Self{Pod: "server-0", Namespace: "b", Identity: func() string { return tp.idB }})
	tp.b = startProxy(t, bCfg, storeB, func(o *server.Options) { o.Tap = tp.tB })
	tp.tapB = serveTap(t, &tap.Server{Tap: tp.tB, Identity: storeB, ClientID: tapID, Log: logger(t)}, mods...)

	dest := func(svc, backend string) config.Destination {
		return config.Destination{Name: svc, Addresses: []string{svc}, Endpoints: []config.Endpoint{endpoint(backend, tp.b, tp.idB)}}
	}
	aCfg := &config.Config{DetectTimeout: config.Duration{Duration: detectTimeout}, Destinations: []config.Destination{
		dest(svcHTTPBin, be.httpbin), dest(svcGRPC, be.grpc), dest(svcProbe, be.probe)}}
	storeA := newStore(t, ca.IssueValid(t, tp.idA), ca)
	tp.tA = tap.New(tap.Self{Pod: "client-0", Namespace: "a", Identity: func() string { return tp.idA }})
	tp.a = startProxy(t, aCfg, storeA, func(o *server.Options) { o.Tap = tp.tA })
	tp.tapA = serveTap(t, &tap.Server{Tap: tp.tA, Identity: storeA, ClientID: tapID, Log: logger(t)}, mods...)
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

func serveTap(t *testing.T, s *tap.Server, mods ...func(*tap.Server)) string {
	for _, m := range mods {
		m(s)
	}
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
	tp := newTapPair(t)
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

// TestTapFilters: each TapMatch field selects what it says, on the side it says;
// a malformed match is refused with INVALID_ARGUMENT.
func TestTapFilters(t *testing.T) {
	tp := newTapPair(t)
	leaf := tp.ca.IssueValid(t, tapID)
	ca := tapClient(t, tp.tapA, tp.idA, leaf, tp.ca)
	cb := tapClient(t, tp.tapB, tp.idB, leaf, tp.ca)
	out := api.TapDirection_TAP_DIRECTION_OUTBOUND
	in := api.TapDirection_TAP_DIRECTION_INBOUND
	cases := []struct {
		name   string
		client apigrpc.TapClient
		match  *api.TapMatch
		want   []string // paths of the requests the stream must show, in order
	}{
		{"path prefix", ca, &api.TapMatch{PathPrefix: "/status/"}, []string{"/status/201"}},
		{"method", ca, &api.TapMatch{Method: "POST"}, []string{"/anything/post"}},
		{"authority without case", ca, &api.TapMatch{Authority: strings.ToUpper("h.example")}, []string{"/headers"}},
		{"outbound destination namespace", ca, &api.TapMatch{Namespace: "b"}, []string{"/status/201", "/anything/post", "/headers", "/get"}},
		{"outbound: the other side is the destination", ca, &api.TapMatch{Namespace: "a"}, nil},
		{"inbound source namespace", cb, &api.TapMatch{Namespace: "a", PathPrefix: "/get"}, []string{"/get"}},
		{"inbound workload by what the identity says", cb, &api.TapMatch{Workload: "serviceaccount/" + clientSA, Method: "POST"}, []string{"/anything/post"}},
		{"inbound workload kind the proxy cannot know matches nothing", cb, &api.TapMatch{Workload: "deployment/client"}, nil},
		{"direction inbound on the client proxy", ca, &api.TapMatch{Direction: in}, nil},
		{"direction outbound", ca, &api.TapMatch{Direction: out, Method: "POST"}, []string{"/anything/post"}},
	}
	streams := make([]*observed, len(cases))
	for i, c := range cases {
		streams[i], _ = observe(t, c.client, &api.ObserveRequest{Match: c.match, MaxEventsPerSecond: 1000})
	}
	waitStreams(t, tp.tA, 7)
	waitStreams(t, tp.tB, 3)

	c := h1Client()
	do := func(method, path, host string) {
		req, _ := http.NewRequest(method, "http://"+tp.httpbin+path, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("GET", "/status/201", "")
	do("POST", "/anything/post", "")
	do("GET", "/headers", "h.example")
	do("GET", "/get", "")
	// Every stream has seen all it will once the catch-all streams saw the last
	// request end on both sides.
	time.Sleep(300 * time.Millisecond)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, ev := range streams[i].snapshot() {
				if ri := ev.GetRequestInit(); ri != nil {
					got = append(got, ri.GetPath())
				}
			}
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Fatalf("stream showed %q, want %q", got, c.want)
			}
		})
	}

	t.Run("invalid matches", func(t *testing.T) {
		for _, m := range []*api.TapMatch{
			{Workload: "web"},
			{Workload: "deployment/"},
			{PathPrefix: "status"},
			{Direction: api.TapDirection(7)},
			{Authority: strings.Repeat("a", 2000)},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := ca.Observe(ctx, &api.ObserveRequest{Match: m})
			if err == nil {
				_, err = st.Recv()
			}
			cancel()
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("match %v: %v, want InvalidArgument", m, err)
			}
		}
	})
}

// tapMetric is one weft_tap_* value of tt.
func tapMetric(tt *tap.Tap, name string, labels ...string) float64 {
	var b strings.Builder
	tt.WriteMetrics(&b)
	text := b.String()
	if len(labels) == 0 {
		for _, line := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return -1
	}
	return metricValue(text, name, labels...)
}

// TestTapRateBound: 1,000 requests a second for two seconds under a stream bounded to
// 10 events a second yield about 10 a second, whole requests only, and every event
// dropped is counted, in the events and in the metrics.
func TestTapRateBound(t *testing.T) {
	tp := newTapPair(t)
	o, _ := observe(t, tapClient(t, tp.tapA, tp.idA, tp.ca.IssueValid(t, tapID), tp.ca), &api.ObserveRequest{MaxEventsPerSecond: 10})
	waitStreams(t, tp.tA, 1)

	const workers, perWorker = 10, 200 // 2,000 requests at 1,000 a second
	var sent atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h1Client()
			for i := range perWorker {
				// Each worker paced at 100 a second.
				if d := time.Until(start.Add(time.Duration(i)*10*time.Millisecond + time.Duration(w)*time.Millisecond)); d > 0 {
					time.Sleep(d)
				}
				resp, err := c.Get("http://" + tp.httpbin + "/status/204")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	during := len(o.snapshot())
	if rps := float64(sent.Load()) / elapsed.Seconds(); rps < 500 {
		t.Logf("only %.0f requests a second on this machine", rps)
	}
	// The bound: the rate over the time (rounded up: 4.59 s earns 45.9 events, and
	// the 46th is admitted on its fraction), the bucket's burst (3) and at most two
	// events of debt (a request admitted on its last token sends all three).
	if max := int(math.Ceil(10*elapsed.Seconds())) + 3 + 2; during > max || during < 10 {
		t.Fatalf("%d events in %v from %d requests, want 10..%d", during, elapsed, sent.Load(), max)
	}
	// After a second's rest one more request is admitted, and its first event
	// carries the count of everything dropped before it.
	time.Sleep(time.Second)
	resp, err := h1Client().Get("http://" + tp.httpbin + "/status/204")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	xs := waitExchanges(t, o, during/3+1)
	var events, dropped uint64
	for _, x := range xs {
		if x.init == nil || x.resp == nil || x.end == nil {
			t.Fatalf("a request's events arrived partly: %+v", x)
		}
	}
	for _, ev := range o.snapshot() {
		events++
		dropped += ev.GetDropped()
	}
	requests := uint64(sent.Load()) + 1
	if events+dropped != 3*requests {
		t.Fatalf("%d events sent + %d dropped, want 3 x %d requests", events, dropped, requests)
	}
	if m := tapMetric(tp.tA, "weft_tap_events_dropped_total", `reason="rate_limit"`); m != float64(dropped) {
		t.Fatalf("weft_tap_events_dropped_total{reason=rate_limit} = %v, want %d", m, dropped)
	}
	if m := tapMetric(tp.tA, "weft_tap_events_sent_total"); m != float64(events) {
		t.Fatalf("weft_tap_events_sent_total = %v, want %d", m, events)
	}
	t.Logf("%d requests in %v: %d events sent, %d dropped", requests-1, elapsed.Round(time.Millisecond), events, dropped)
}

// TestTapRefusesOthers: only a certificate of the tap identity from the mesh's trust
// roots opens a stream; every other client fails in the TLS handshake, and the tap
// stays closed (no stream, no per-request cost).
func TestTapRefusesOthers(t *testing.T) {
	tp := newTapPair(t)
	rogue := testpki.NewCA(t, "rogue anchor")
	cases := []struct {
		name string
		leaf *testpki.Leaf
	}{
		{"no client certificate", nil},
		{"a workload's identity", tp.ca.IssueValid(t, tp.idA)},
		{"the tap identity in another namespace", tp.ca.IssueValid(t, meshdefaults.TapIdentity(trustDomain, "a"))},
		{"the tap identity from another anchor", rogue.IssueValid(t, tapID)},
		{"the tap identity expired", tp.ca.Issue(t, tapID, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := tapClient(t, tp.tapA, tp.idA, c.leaf, tp.ca).Observe(ctx, &api.ObserveRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("Observe: %v, want the handshake refused (Unavailable)", err)
			}
		})
	}
	if tp.tA.Active() || tapMetric(tp.tA, "weft_tap_streams_opened_total") != 0 {
		t.Fatal("a refused client opened a stream")
	}
	// An HTTP/1.1 client with the right certificate gets no HTTP/1.1 either.
	leaf := tp.ca.IssueValid(t, tapID)
	pool := x509.NewCertPool()
	pool.AddCert(tp.ca.Cert)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{leaf.TLS}, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}}}
	if resp, err := c.Post("https://"+tp.tapA+tap.ObservePath, "application/grpc", strings.NewReader("")); err == nil {
		resp.Body.Close()
		t.Fatalf("HTTP/1.1 to the tap port answered %d", resp.StatusCode)
	}
}

// TestTapStreamLimit: the ninth stream is refused with RESOURCE_EXHAUSTED, and a
// slot freed by a stream that ends is taken again.
func TestTapStreamLimit(t *testing.T) {
	tp := newTapPair(t)
	c := tapClient(t, tp.tapA, tp.idA, tp.ca.IssueValid(t, tapID), tp.ca)
	var cancels []context.CancelFunc
	for range tap.MaxStreams {
		_, cancel := observe(t, c, &api.ObserveRequest{})
		cancels = append(cancels, cancel)
	}
	waitStreams(t, tp.tA, tap.MaxStreams)
	ninth := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.Observe(ctx, &api.ObserveRequest{})
		if err == nil {
			_, err = st.Recv()
		}
		return err
	}
	if err := ninth(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("ninth stream: %v, want ResourceExhausted", err)
	}
	if m := tapMetric(tp.tA, "weft_tap_streams_refused_total", `reason="limit"`); m != 1 {
		t.Fatalf("weft_tap_streams_refused_total{reason=limit} = %v", m)
	}
	cancels[0]()
	waitStreams(t, tp.tA, tap.MaxStreams-1)
	o, _ := observe(t, c, &api.ObserveRequest{})
	waitStreams(t, tp.tA, tap.MaxStreams)
	resp, err := h1Client().Get("http://" + tp.httpbin + "/status/200")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitExchanges(t, o, 1)
}

// TestTapSlowReader: a tap client that stops reading loses events (counted), never
// slows the requests, and loses its stream after the write timeout, which frees
// the slot.
func TestTapSlowReader(t *testing.T) {
	tp := newTapPair(t, func(s *tap.Server) { s.WriteTimeout = 3 * time.Second })
	leaf := tp.ca.IssueValid(t, tapID)
	pool := x509.NewCertPool()
	pool.AddCert(tp.ca.Cert)
	cfg := peertls.ClientConfig(peertls.ClientOptions{ServerName: tp.idA, Roots: func() *x509.CertPool { return pool },
		Certificate: func() *tls.Certificate { return &leaf.TLS }})
	// A fixed 64 KiB window (no BDP growth): the client's buffer fills quickly.
	cc, err := grpc.NewClient("passthrough:///"+tp.tapA, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	// run sends n requests from 4 clients at once; it returns their mean and
	// slowest latency.
	run := func(n int) (mean, slowest time.Duration) {
		var total, worst atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n / 4 {
					t0 := time.Now()
					resp, err := c.Get("http://" + tp.httpbin + "/status/204")
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					d := int64(time.Since(t0))
					total.Add(d)
					if d > worst.Load() {
						worst.Store(d)
					}
				}
			}()
		}
		wg.Wait()
		return time.Duration(total.Load() / int64(n)), time.Duration(worst.Load())
	}
	base, _ := run(1000)
	if _, err := apigrpc.NewTapClient(cc).Observe(ctx, &api.ObserveRequest{MaxEventsPerSecond: 1000}); err != nil {
		t.Fatal(err)
	} // never read
	waitStreams(t, tp.tA, 1)
	// Rounds of load until the stalled reader's queue overflows: the rate bound
	// (1,000 events a second) admits only so many events per round, and a fast round
	// may end before the window and the queue are full.
	dropped := func() float64 { return tapMetric(tp.tA, "weft_tap_events_dropped_total", `reason="slow_reader"`) }
	for round := 1; ; round++ {
		mean, slowest := run(2000)
		t.Logf("stalled tap, round %d: mean %v, slowest %v; no tap: mean %v", round, mean, slowest, base)
		// A request path that waited for the stalled reader would wait out the write
		// timeout (3s) once its queue is full.
		if slowest > 1500*time.Millisecond || mean > 3*base+2*time.Millisecond {
			t.Fatalf("with a stalled tap reader: mean %v (%v without a tap), slowest %v", mean, base, slowest)
		}
		if dropped() > 0 {
			break
		}
		if round == 10 {
			t.Fatalf("no event dropped for the slow reader after %d rounds (%v)", round, dropped())
		}
	}
	// The stalled stream's writer times out and the slot is free again.
	waitStreams(t, tp.tA, 0)
}

// TestTapHandshakeTimeout: a connection that never completes TLS is closed after the
// handshake timeout, while an open stream lives on past it.
func TestTapHandshakeTimeout(t *testing.T) {
	tp := newTapPair(t, func(s *tap.Server) { s.HandshakeTimeout = 200 * time.Millisecond })
	o, _ := observe(t, tapClient(t, tp.tapA, tp.idA, tp.ca.IssueValid(t, tapID), tp.ca), &api.ObserveRequest{})
	waitStreams(t, tp.tA, 1)
	conn, err := net.Dial("tcp", tp.tapA)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	t0 := time.Now()
	if _, err := conn.Read(make([]byte, 1)); err == nil || time.Since(t0) > 2*time.Second {
		t.Fatalf("silent connection: %v after %v, want closed after 200ms", err, time.Since(t0))
	}
	time.Sleep(300 * time.Millisecond)
	resp, err := h1Client().Get("http://" + tp.httpbin + "/status/200")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitExchanges(t, o, 1)
}

// TestTapConnectionLimit: connections past 16 on the tap port are closed at once,
// whoever makes them, and the port serves again once they are gone.
func TestTapConnectionLimit(t *testing.T) {
	tp := newTapPair(t)
	var silent []net.Conn
	for range 16 {
		c, err := net.Dial("tcp", tp.tapA)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	// The server has accepted them all once the next one is closed at once.
	extra, err := net.Dial("tcp", tp.tapA)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("17th connection: %v, want closed (EOF) at once", err)
	}
	extra.Close()
	for _, c := range silent {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := tapClient(t, tp.tapA, tp.idA, tp.ca.IssueValid(t, tapID), tp.ca).Observe(ctx, &api.ObserveRequest{})
		if err == nil {
			waitStreams(t, tp.tA, 1)
			cancel()
			return
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("tap port after the connections closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTapIdleStream: a stream with no traffic for longer than the write timeout stays
// open (the timeout bounds a write, not the wait for events).
func TestTapIdleStream(t *testing.T) {
	tp := newTapPair(t, func(s *tap.Server) { s.WriteTimeout = 300 * time.Millisecond })
	o, _ := observe(t, tapClient(t, tp.tapA, tp.idA, tp.ca.IssueValid(t, tapID), tp.ca), &api.ObserveRequest{})
	waitStreams(t, tp.tA, 1)
	for i := 1; i <= 2; i++ {
		resp, err := h1Client().Get("http://" + tp.httpbin + "/status/200")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		waitExchanges(t, o, i)
		time.Sleep(time.Second)
	}
	waitStreams(t, tp.tA, 1)
}

// TestTapInboundRefusal: a request the server's inbound policy refuses is tapped on
// the server's side with its status and the reason, and nothing reached the app.
func TestTapInboundRefusal(t *testing.T) {
	tp := newTapPairWith(t, &config.Config{Inbound: config.Inbound{DefaultPolicy: config.PolicyDeny}})
	o, _ := observe(t, tapClient(t, tp.tapB, tp.idB, tp.ca.IssueValid(t, tapID), tp.ca), &api.ObserveRequest{})
	waitStreams(t, tp.tB, 1)
	resp, err := h1Client().Get("http://" + tp.httpbin + "/refused")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
	for _, x := range waitExchanges(t, o, 1) {
		if x.init.GetRequestInit().GetPath() != "/refused" || x.init.GetSource().GetIdentity() != tp.idA ||
			x.resp.GetResponseInit().GetHttpStatus() != http.StatusForbidden || x.end.GetResponseEnd().GetError() != "unauthorized" {
			t.Fatalf("refusal tapped as %v / %v / %v", x.init, x.resp, x.end)
		}
	}
}

// TestTapOwnAnswer: a request the client proxy answers itself (here an HTTPFault's
// abort, 418) is tapped on the client's side with the status, the original
// destination and the proxy's reason, and never reached the app.
func TestTapOwnAnswer(t *testing.T) {
	const svc = "10.96.1.14:80"
	app := newApp(t, "a", nil)
	tt := tap.New(tap.Self{Pod: "client-0", Namespace: "shop"})
	rp := startRouted(t, svc, func(o *server.Options) { o.Tap = tt })
	rp.src.set(dest(svc, []*api.Route{faultRoute("teapot", &api.FaultAbort{HttpStatus: 418, PerMillion: 1_000_000}, nil)}, nil, be("shop/a:80", app)))
	ca := testpki.NewCA(t, "weft test anchor")
	id := spiffe("shop", clientSA)
	addr := serveTap(t, &tap.Server{Tap: tt, Identity: newStore(t, ca.IssueValid(t, id), ca), ClientID: tapID, Log: logger(t)})
	o, _ := observe(t, tapClient(t, addr, id, ca.IssueValid(t, tapID), ca), &api.ObserveRequest{})
	waitStreams(t, tt, 1)
	if res := rp.do(h1Client(), "GET", "/chaos", nil, nil); res.status != http.StatusTeapot || res.backend != "" {
		t.Fatalf("%+v, want the fault's 418 and no backend", res)
	}
	for _, x := range waitExchanges(t, o, 1) {
		if x.init.GetDirection() != api.TapDirection_TAP_DIRECTION_OUTBOUND || x.init.GetRequestInit().GetPath() != "/chaos" ||
			x.init.GetDestination().GetAddress() != svc || x.resp.GetResponseInit().GetHttpStatus() != http.StatusTeapot ||
			x.end.GetResponseEnd().GetError() != "fault injected by HTTPFault shop/teapot" {
			t.Fatalf("own answer tapped as %v / %v / %v", x.init, x.resp, x.end)
		}
	}
}
