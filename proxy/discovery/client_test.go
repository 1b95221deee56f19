package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/freeport"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

const (
	testServerName = "weft-destination.weft-system.svc"
	testClientID   = "spiffe://cluster.local/ns/shop/sa/web"
	webAuthority   = "web.shop.svc.cluster.local:80"
)

var webAddr = netip.MustParseAddrPort("10.96.0.10:80")

// fakeDest is a destination service for the client's tests, speaking the real gRPC
// API over real mTLS: it hands each stream to the test, which decides what to send.
type fakeDest struct {
	apigrpc.UnimplementedDestinationServer
	opened  chan *fakeStream
	streams atomic.Int32
}

type fakeStream struct {
	req    *api.GetDestination
	peerID string
	serial string // of the client certificate
	conn   string // the client's address: one per connection
	send   chan *api.DestinationUpdate
	done   chan struct{} // closed when the server's handler returns (client cancelled)
}

func (f *fakeDest) Get(req *api.GetDestination, stream apigrpc.Destination_GetServer) error {
	fs := &fakeStream{req: req, send: make(chan *api.DestinationUpdate, 16), done: make(chan struct{})}
	defer close(fs.done)
	if p, ok := peer.FromContext(stream.Context()); ok {
		fs.conn = p.Addr.String()
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			fs.peerID = identity.PeerID(&ti.State)
			if len(ti.State.PeerCertificates) > 0 {
				fs.serial = ti.State.PeerCertificates[0].SerialNumber.String()
			}
		}
	}
	f.streams.Add(1)
	f.opened <- fs
	for {
		select {
		case u := <-fs.send:
			if err := stream.Send(u); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (fs *fakeStream) snapshot(c *api.DestinationConfig) {
	fs.send <- &api.DestinationUpdate{Kind: &api.DestinationUpdate_Snapshot{Snapshot: c}}
}

func (fs *fakeStream) delta(d *api.EndpointDelta) {
	fs.send <- &api.DestinationUpdate{Kind: &api.DestinationUpdate_Endpoints{Endpoints: d}}
}

func (fs *fakeStream) notFound() {
	fs.send <- &api.DestinationUpdate{Kind: &api.DestinationUpdate_NotFound{NotFound: &api.NotFound{Reason: "no such service"}}}
}

// testPKI is a trust anchor, the client's workload identity and the server's
// certificate for testServerName.
type testPKI struct {
	ca     *testpki.CA
	pool   *x509.CertPool
	store  *identity.Store
	server tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	ca := testpki.NewCA(t, "anchor")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	b, err := identity.NewBundle(ca.IssueValid(t, testClientID).TLS, pool)
	if err != nil {
		t.Fatal(err)
	}
	store := &identity.Store{}
	store.Set(b)
	return &testPKI{ca: ca, pool: pool, store: store, server: ca.IssueDNS(t, testServerName).TLS}
}

// serve runs a fake destination service on addr ("127.0.0.1:0" for any port) that
// requires a client certificate chaining to the anchor, as the real one does.
func serve(t *testing.T, p *testPKI, addr string, cert tls.Certificate) (*fakeDest, *grpc.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDest{opened: make(chan *fakeStream, 100)}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
	})))
	apigrpc.RegisterDestinationServer(s, f)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return f, s, ln.Addr().String()
}

func newClient(t *testing.T, p *testPKI, addr string, tweak func(*Options)) *Client {
	t.Helper()
	opts := Options{Addr: addr, ServerName: testServerName, Namespace: "shop", Identity: p.store,
		FirstAnswerWait: 2 * time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	if tweak != nil {
		tweak(&opts)
	}
	c := New(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (f *fakeDest) next(t *testing.T) *fakeStream {
	t.Helper()
	select {
	case fs := <-f.opened:
		return fs
	case <-time.After(5 * time.Second):
		t.Fatal("no stream was opened within 5s")
		return nil
	}
}

// noStream checks that no further stream opens within d.
func (f *fakeDest) noStream(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case fs := <-f.opened:
		t.Fatalf("unexpected stream for %v", fs.req)
	case <-time.After(d):
	}
}

// lookupAsync runs a first Lookup, which blocks until the first answer.
func lookupAsync(c *Client, target Target) <-chan *api.DestinationConfig {
	ch := make(chan *api.DestinationConfig, 1)
	go func() { ch <- c.Lookup(context.Background(), target) }()
	return ch
}

func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSnapshotThenDelta(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target Target
		want   *api.GetDestination
	}{
		{"by authority", Target{Authority: webAuthority, Addr: webAddr},
			&api.GetDestination{Target: &api.GetDestination_Authority{Authority: webAuthority}, ContextNamespace: "shop"}},
		{"by address", Target{Addr: webAddr},
			&api.GetDestination{Target: &api.GetDestination_Address{Address: "10.96.0.10:80"}, ContextNamespace: "shop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			f, _, addr := serve(t, p, "127.0.0.1:0", p.server)
			c := newClient(t, p, addr, nil)

			first := lookupAsync(c, tc.target)
			fs := f.next(t)
			if !proto.Equal(fs.req, tc.want) {
				t.Errorf("request: got %v, want %v", fs.req, tc.want)
			}
			if fs.peerID != testClientID {
				t.Errorf("the server saw client identity %q, want %q", fs.peerID, testClientID)
			}
			v1, v2 := compiled(t, "10.0.0.1"), compiled(t, "10.0.0.1", "10.0.0.2")
			fs.snapshot(v1)
			got1 := <-first
			if !proto.Equal(got1, v1) {
				t.Fatalf("first lookup: got %v, want %v", got1, v1)
			}
			kept := proto.Clone(got1)

			fs.delta(delta(t, v1, v2))
			eventually(t, "the delta is applied", 2*time.Second, func() bool {
				return proto.Equal(c.Lookup(context.Background(), tc.target), v2)
			})
			if !proto.Equal(got1, kept) {
				t.Errorf("the configuration returned first was modified by the delta:\n now %v\nwas %v", got1, kept)
			}
			if s := c.Stats(); s.Snapshots != 1 || s.Deltas != 1 || s.Subscriptions != 1 || s.Resubscriptions != 0 {
				t.Errorf("stats: %+v", s)
			}
			var text strings.Builder
			if err := c.WriteMetrics(&text); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"weft_destination_subscriptions 1\n", `weft_destination_updates_total{kind="snapshot"} 1` + "\n",
				`weft_destination_updates_total{kind="delta"} 1` + "\n"} {
				if !strings.Contains(text.String(), want) {
					t.Errorf("metrics lack %q:\n%s", want, text.String())
				}
			}
			f.noStream(t, 50*time.Millisecond)
		})
	}
}

func TestBadDeltaResubscribes(t *testing.T) {
	v1, v2, v3 := compiled(t, "10.0.0.1"), compiled(t, "10.0.0.1", "10.0.0.2"), compiled(t, "10.0.0.2")
	unknown := proto.CloneOf(delta(t, v1, v2))
	unknown.Backend = "shop/other:80"
	for _, tc := range []struct {
		name string
		d    *api.EndpointDelta
	}{
		{"delta made against another base", delta(t, v2, v3)},
		{"delta for an unknown backend", unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			f, _, addr := serve(t, p, "127.0.0.1:0", p.server)
			c := newClient(t, p, addr, nil)
			target := Target{Authority: webAuthority}
			first := lookupAsync(c, target)
			fs := f.next(t)
			fs.snapshot(v1)
			if got := <-first; !proto.Equal(got, v1) {
				t.Fatalf("got %v, want %v", got, v1)
			}
			fs.delta(tc.d)
			// The client drops the stream and asks again for a snapshot; meanwhile
			// it keeps the last good configuration.
			again := f.next(t)
			select {
			case <-fs.done:
			case <-time.After(2 * time.Second):
				t.Fatal("the stream with the bad delta was not cancelled")
			}
			if got := c.Lookup(context.Background(), target); !proto.Equal(got, v1) {
				t.Errorf("after a bad delta, want the last good configuration %v, got %v", v1, got)
			}
			again.snapshot(v3)
			eventually(t, "the new snapshot is used", 2*time.Second, func() bool {
				return proto.Equal(c.Lookup(context.Background(), target), v3)
			})
			if s := c.Stats(); s.BadDeltas != 1 || s.Resubscriptions != 1 {
				t.Errorf("stats: %+v", s)
			}
		})
	}
}

func TestNotFoundIsCachedThenUpdated(t *testing.T) {
	p := newPKI(t)
	f, _, addr := serve(t, p, "127.0.0.1:0", p.server)
	c := newClient(t, p, addr, nil) // FirstAnswerWait 2s
	target := Target{Addr: netip.MustParseAddrPort("10.96.0.99:80")}
	start := time.Now()
	first := lookupAsync(c, target)
	fs := f.next(t)
	fs.notFound()
	if got := <-first; got != nil {
		t.Fatalf("not found: want nil, got %v", got)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("a not_found answer should end the wait at once; the lookup took %s", el)
	}
	// Unknown destinations are cached: many lookups, no new stream, no waiting. An
	// uncached lookup would wait up to FirstAnswerWait (2s) for an answer that the
	// fake never sends; the slowest of the cached ones must stay far below that (the
	// bound is loose because a loaded CI machine can stall any loop for a while).
	var slowest time.Duration
	for range 1000 {
		start := time.Now()
		if got := c.Lookup(context.Background(), target); got != nil {
			t.Fatalf("want nil, got %v", got)
		}
		slowest = max(slowest, time.Since(start))
	}
	if slowest > time.Second {
		t.Errorf("a lookup of a cached unknown destination took %s: it waited for an answer", slowest)
	}
	f.noStream(t, 50*time.Millisecond)
	// The Service appears later: the same stream brings it.
	v1 := compiled(t, "10.0.0.1")
	fs.snapshot(v1)
	eventually(t, "the later snapshot is used", 2*time.Second, func() bool {
		return proto.Equal(c.Lookup(context.Background(), target), v1)
	})
	if s := c.Stats(); s.NotFound != 1 || s.Snapshots != 1 || f.streams.Load() != 1 {
		t.Errorf("stats: %+v, streams opened %d", s, f.streams.Load())
	}
}

func TestIdleSubscriptionExpires(t *testing.T) {
	p := newPKI(t)
	f, _, addr := serve(t, p, "127.0.0.1:0", p.server)
	const idle = 300 * time.Millisecond
	c := newClient(t, p, addr, func(o *Options) { o.IdleTimeout = idle })
	used, unused := Target{Authority: webAuthority}, Target{Authority: "books.shop.svc.cluster.local:80"}

	// The unused target is subscribed first and the used one last, so that a slow
	// setup on a loaded machine cannot idle out the used one before the loop below
	// starts using it; the unused one's idle time is measured from before its only
	// lookup.
	var streams [2]*fakeStream
	var start time.Time
	for i, target := range []Target{unused, used} {
		if target == unused {
			start = time.Now()
		}
		first := lookupAsync(c, target)
		streams[i] = f.next(t)
		streams[i].snapshot(compiled(t, "10.0.0.1"))
		if got := <-first; got == nil {
			t.Fatal("no configuration")
		}
	}
	streams[0], streams[1] = streams[1], streams[0] // [0] is the used target's
	if streams[0].conn != streams[1].conn {
		t.Errorf("two subscriptions used two connections (%s, %s), want one", streams[0].conn, streams[1].conn)
	}
	// Keep using one target for at least 3×idle after the other's lookup, and until
	// the other expires (at most 10s: a loaded machine may run the expiry late, but
	// never that late); the other is left alone.
	const giveUp = 10 * time.Second
	var expiredAfter time.Duration
	for el := time.Since(start); el < 3*idle || expiredAfter == 0 && el < giveUp; el = time.Since(start) {
		if c.Lookup(context.Background(), used) == nil {
			t.Fatal("the used target lost its configuration")
		}
		select {
		case <-streams[1].done:
			if expiredAfter == 0 {
				expiredAfter = time.Since(start)
			}
		default:
		}
		select {
		case <-streams[0].done:
			t.Fatal("the stream of a target in use was cancelled")
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	if expiredAfter == 0 {
		t.Fatalf("the idle subscription's stream was not cancelled within %s", giveUp)
	}
	if expiredAfter < idle {
		t.Errorf("the idle subscription expired after %s, before the idle timeout %s", expiredAfter, idle)
	}
	if s := c.Stats(); s.Subscriptions != 1 || s.Expired != 1 {
		t.Errorf("stats: %+v", s)
	}
	// Using it again subscribes again.
	again := lookupAsync(c, unused)
	fs := f.next(t)
	if fs.req.GetAuthority() != unused.Authority {
		t.Errorf("resubscribed to %v", fs.req)
	}
	fs.notFound()
	<-again
}

func TestServerRestartKeepsLastConfig(t *testing.T) {
	p := newPKI(t)
	f, s, addr := serve(t, p, restartableAddr(t), p.server)
	c := newClient(t, p, addr, nil)
	target := Target{Authority: webAuthority}
	v1, v2 := compiled(t, "10.0.0.1"), compiled(t, "10.0.0.2")
	first := lookupAsync(c, target)
	f.next(t).snapshot(v1)
	if got := <-first; !proto.Equal(got, v1) {
		t.Fatalf("got %v", got)
	}

	s.Stop()
	// While the service is down lookups keep answering, at once, with the last
	// configuration.
	for range 10 {
		start := time.Now()
		if got := c.Lookup(context.Background(), target); !proto.Equal(got, v1) {
			t.Fatalf("with the service down, want the last configuration, got %v", got)
		}
		if el := time.Since(start); el > 10*time.Millisecond {
			t.Fatalf("a lookup with the service down took %s", el)
		}
		time.Sleep(30 * time.Millisecond)
	}

	// Meanwhile the proxy's certificate was renewed: the new connection presents it.
	renewed, err := identity.NewBundle(p.ca.IssueValid(t, testClientID).TLS, p.pool)
	if err != nil {
		t.Fatal(err)
	}
	p.store.Set(renewed)

	f2, _, _ := serve(t, p, addr, p.server)
	start := time.Now()
	fs := f2.next(t)
	t.Logf("resubscribed %s after the service came back", time.Since(start).Round(time.Millisecond))
	if want := renewed.Leaf.SerialNumber.String(); fs.serial != want {
		t.Errorf("the new connection presented certificate %s, want the renewed %s", fs.serial, want)
	}
	fs.snapshot(v2)
	eventually(t, "the fresh configuration is used", 2*time.Second, func() bool {
		return proto.Equal(c.Lookup(context.Background(), target), v2)
	})
	if st := c.Stats(); st.Resubscriptions < 1 {
		t.Errorf("stats: %+v", st)
	}
}

// After an outage long enough for the backoff to grow, the first stream the service
// answers again brings every other subscription back at once, instead of each one
// waiting out its own grown backoff.
func TestServiceBackWakesBackingOffSubscriptions(t *testing.T) {
	p := newPKI(t)
	f, s, addr := serve(t, p, restartableAddr(t), p.server)
	c := newClient(t, p, addr, func(o *Options) { o.MinBackoff, o.MaxBackoff = 100*time.Millisecond, 2*time.Second })
	const n = 5
	for i := range n {
		first := lookupAsync(c, Target{Authority: fmt.Sprintf("svc-%d.shop.svc.cluster.local:80", i)})
		f.next(t).snapshot(compiled(t, "10.0.0.1"))
		<-first
	}
	if st := c.Stats(); st.Streams != n {
		t.Fatalf("with the service up want %d streams, stats %+v", n, st)
	}

	s.Stop()
	eventually(t, "every stream noticed the outage", 2*time.Second, func() bool { return c.Stats().Streams == 0 })
	// Attempts at 0, ~0.1, ~0.3, ~0.7 and ~1.5s: each subscription is now waiting
	// between 0.4s and 2s for its next attempt.
	time.Sleep(2 * time.Second)

	f2, _, _ := serve(t, p, addr, p.server)
	restarted := time.Now()
	f2.next(t).snapshot(compiled(t, "10.0.0.1"))
	firstAnswer := time.Now()
	for range n - 1 {
		f2.next(t).snapshot(compiled(t, "10.0.0.1"))
	}
	rest := time.Since(firstAnswer)
	t.Logf("first stream back %s after the restart, the %d others %s after it answered",
		firstAnswer.Sub(restarted).Round(time.Millisecond), n-1, rest.Round(time.Millisecond))
	if rest > 200*time.Millisecond {
		t.Errorf("the other subscriptions came back %s after the first answer, want at once", rest)
	}
	eventually(t, "every stream answered", 2*time.Second, func() bool { return c.Stats().Streams == n })
}

func TestUnreachableAtStart(t *testing.T) {
	p := newPKI(t)
	// An address nothing listens on yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	const wait = 300 * time.Millisecond
	c := newClient(t, p, addr, func(o *Options) { o.FirstAnswerWait = wait })
	target := Target{Authority: webAuthority}

	start := time.Now()
	if got := c.Lookup(context.Background(), target); got != nil {
		t.Fatalf("want nil, got %v", got)
	}
	if el := time.Since(start); el < wait || el > wait+500*time.Millisecond {
		t.Errorf("the first lookup took %s, want about %s", el, wait)
	}
	// The wait is paid once: later lookups do not wait again.
	start = time.Now()
	if got := c.Lookup(context.Background(), target); got != nil {
		t.Fatalf("want nil, got %v", got)
	}
	if el := time.Since(start); el > 20*time.Millisecond {
		t.Errorf("a second lookup waited %s", el)
	}
	// A request's context bounds the wait of another new target.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	start = time.Now()
	c.Lookup(ctx, Target{Authority: "books.shop.svc.cluster.local:80"})
	cancel()
	if el := time.Since(start); el > 200*time.Millisecond {
		t.Errorf("a lookup with a 50ms context waited %s", el)
	}

	f, _, _ := serve(t, p, addr, p.server)
	v1 := compiled(t, "10.0.0.1")
	var fs *fakeStream
	for fs == nil || fs.req.GetAuthority() != webAuthority {
		fs = f.next(t)
		if fs.req.GetAuthority() != webAuthority {
			fs.notFound()
		}
	}
	fs.snapshot(v1)
	eventually(t, "the configuration arrives once the service is up", 2*time.Second, func() bool {
		return proto.Equal(c.Lookup(context.Background(), target), v1)
	})
}

func TestConcurrentFirstLookupsShareOneStream(t *testing.T) {
	p := newPKI(t)
	f, _, addr := serve(t, p, "127.0.0.1:0", p.server)
	c := newClient(t, p, addr, nil)
	target := Target{Authority: webAuthority}
	const n = 50
	results := make(chan *api.DestinationConfig, n)
	var ready sync.WaitGroup
	ready.Add(n)
	gate := make(chan struct{})
	for range n {
		go func() {
			ready.Done()
			<-gate
			results <- c.Lookup(context.Background(), target)
		}()
	}
	ready.Wait()
	close(gate)
	fs := f.next(t)
	v1 := compiled(t, "10.0.0.1")
	fs.snapshot(v1)
	var first *api.DestinationConfig
	for i := range n {
		got := <-results
		if !proto.Equal(got, v1) {
			t.Fatalf("lookup %d: got %v", i, got)
		}
		if first == nil {
			first = got
		} else if got != first {
			t.Errorf("lookup %d got another copy of the configuration", i)
		}
	}
	f.noStream(t, 100*time.Millisecond)
	if got := f.streams.Load(); got != 1 {
		t.Errorf("%d streams for one target", got)
	}
}

func TestServerAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server func(p *testPKI) tls.Certificate
	}{
		{"certificate for another name", func(p *testPKI) tls.Certificate {
			return p.ca.IssueDNS(t, "weft-identity.weft-system.svc").TLS
		}},
		{"certificate from another anchor", func(p *testPKI) tls.Certificate {
			return testpki.NewCA(t, "other").IssueDNS(t, testServerName).TLS
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			f, _, addr := serve(t, p, "127.0.0.1:0", tc.server(p))
			c := newClient(t, p, addr, func(o *Options) { o.FirstAnswerWait = 300 * time.Millisecond })
			if got := c.Lookup(context.Background(), Target{Authority: webAuthority}); got != nil {
				t.Fatalf("want nil, got %v", got)
			}
			f.noStream(t, 300*time.Millisecond)
		})
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	p := newPKI(t)
	f, _, addr := serve(t, p, "127.0.0.1:0", p.server)
	c := newClient(t, p, addr, nil)
	target := Target{Authority: webAuthority, Addr: webAddr}
	first := lookupAsync(c, target)
	f.next(t).snapshot(compiled(t, "10.0.0.1"))
	<-first
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { c.Lookup(ctx, target) }); n != 0 {
		t.Errorf("a lookup of a subscribed target allocates %.1f times", n)
	}
}

func BenchmarkLookup(b *testing.B) {
	c := &Client{}
	empty := map[key]*subscription{}
	c.subs.Store(&empty)
	s := &subscription{key: key{authority: webAuthority}, answered: make(chan struct{})}
	close(s.answered)
	s.cfg.Store(compiled(b, "10.0.0.1"))
	m := map[key]*subscription{s.key: s}
	c.subs.Store(&m)
	ctx := context.Background()
	target := Target{Authority: webAuthority}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c.Lookup(ctx, target) == nil {
				b.Fatal("nil")
			}
		}
	})
}

// TestMemoryPerSubscription measures what one open subscription costs the proxy
// (goroutine, stream, cached configuration of one endpoint), so that "memory follows
// what the application talks to" has a number.
func TestMemoryPerSubscription(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 500 streams")
	}
	p := newPKI(t)
	f, _, addr := serve(t, p, "127.0.0.1:0", p.server)
	c := newClient(t, p, addr, nil)
	cfg := compiled(t, "10.0.0.1")
	go func() {
		for fs := range f.opened {
			fs.snapshot(cfg)
		}
	}()
	// One subscription first, so the connection's own cost is not counted.
	c.Lookup(context.Background(), Target{Authority: "warm.shop.svc.cluster.local:80"})
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		// Stacks too: each subscription has a goroutine.
		return ms.HeapAlloc + ms.StackInuse
	}
	before := heap()
	const n = 500
	for i := range n {
		if c.Lookup(context.Background(), Target{Authority: fmt.Sprintf("svc-%d.shop.svc.cluster.local:80", i)}) == nil {
			t.Fatalf("subscription %d got no configuration", i)
		}
	}
	per := float64(heap()-before) / n
	// The test server runs in this process too: its side of each stream is counted,
	// so the client's own share is lower.
	t.Logf("%.1f KiB per subscription (heap and stacks, client and test server)", per/1024)
	if per > 64<<10 {
		t.Errorf("a subscription costs %.1f KiB, want well under 64 KiB", per/1024)
	}
}

// restartableAddr is a loopback address for a service the test stops and starts again
// on the same port: below the ephemeral range (freeport), so that no other test's
// connection takes the port while the service is down.
func restartableAddr(t *testing.T) string {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// TestUnanswered: the data path can tell "the service said it does not know this
// address" from "the service has not answered" (unreachable, or not yet), which labels
// the plaintext it may send; a target it answered keeps its answer when the service
// goes away.
func TestUnanswered(t *testing.T) {
	p := newPKI(t)
	f, srv, addr := serve(t, p, "127.0.0.1:0", p.server)
	c := newClient(t, p, addr, func(o *Options) { o.FirstAnswerWait = 100 * time.Millisecond })
	target := Target{Addr: netip.MustParseAddrPort("10.96.0.99:80")}
	if !c.Unanswered(target) {
		t.Fatal("a target never looked up has no answer")
	}
	first := lookupAsync(c, target)
	fs := f.next(t)
	if !c.Unanswered(target) {
		t.Fatal("answered before the service answered")
	}
	<-first // the first-answer wait passes
	fs.notFound()
	eventually(t, "the not_found answer is recorded", 2*time.Second, func() bool { return !c.Unanswered(target) })
	srv.Stop()
	if c.Unanswered(target) {
		t.Error("the last answer was forgotten when the service went away")
	}
	other := Target{Addr: netip.MustParseAddrPort("10.96.0.98:80")}
	if c.Lookup(context.Background(), other) != nil || !c.Unanswered(other) {
		t.Error("a new target answered while the service is unreachable")
	}
}
