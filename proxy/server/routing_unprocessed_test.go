package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/server"
)

// TestRoutedUnprocessedResend: a request that no application saw goes to another
// endpoint, whatever the route's retry policy (none here) and method, and the
// endpoint that could not take it leaves rotation at once: a plaintext endpoint that
// refuses connections, one that closes its pooled connections and stops listening
// (an app that is going away), a meshed endpoint whose application refuses the peer
// proxy's connection, a peer proxy that refuses every stream (REFUSED_STREAM), and
// one that answers GOAWAY. A request that an application did see (it read the body,
// then reset the connection) is not sent again.
func TestRoutedUnprocessedResend(t *testing.T) {
	ca := testpki.NewCA(t, "weft test anchor")
	serverID := spiffe("b", serverSA)
	// The good endpoint is a little slower than a healthy bad one, so P2C prefers
	// the bad one while it is in rotation.
	good := newApp(t, "good", sleeping(5*time.Millisecond))
	b := startProxy(t, &config.Config{}, newStore(t, ca.IssueValid(t, serverID), ca))
	meshed := func(appAddr string, proxyPort uint16) *api.Endpoint {
		e := ep(appAddr)
		e.Identity, e.ProxyPort = serverID, uint32(proxyPort)
		return e
	}
	type scenario struct {
		name string
		// bad returns the endpoint that cannot take requests, and breaks it after
		// the warm-up requests (nil: broken from the start).
		bad func(t *testing.T) (*api.Endpoint, func())
		// goodMeshed reaches the good app through the peer proxy b.
		goodMeshed bool
		reason     string
	}
	closedPort := func(t *testing.T) string {
		ln := listen(t)
		a := ln.Addr().String()
		ln.Close()
		return a
	}
	for _, sc := range []scenario{
		{name: "plaintext endpoint refuses connections", reason: "connect",
			bad: func(t *testing.T) (*api.Endpoint, func()) { return ep(closedPort(t)), nil }},
		{name: "plaintext endpoint closes its pooled connections and stops listening", reason: "connect",
			bad: func(t *testing.T) (*api.Endpoint, func()) {
				addr, stop := closableApp(t)
				return ep(addr), stop
			}},
		{name: "meshed endpoint's application refuses the peer proxy", reason: "peer_app_refused", goodMeshed: true,
			bad: func(t *testing.T) (*api.Endpoint, func()) {
				return meshed(closedPort(t), b.inboundPort()), nil
			}},
		{name: "meshed endpoint's application stops while the mesh connection stays", reason: "peer_app_refused", goodMeshed: true,
			bad: func(t *testing.T) (*api.Endpoint, func()) {
				addr, stop := closableApp(t)
				return meshed(addr, b.inboundPort()), stop
			}},
		{name: "peer proxy refuses the stream (REFUSED_STREAM)", reason: "refused_stream", goodMeshed: true,
			bad: func(t *testing.T) (*api.Endpoint, func()) {
				peer := refusingPeer(t, ca, serverID, false)
				return meshed(closedPort(t), mustPort(peer)), nil
			}},
		{name: "peer proxy answers GOAWAY with last stream 0", reason: "goaway", goodMeshed: true,
			bad: func(t *testing.T) (*api.Endpoint, func()) {
				peer := refusingPeer(t, ca, serverID, true)
				return meshed(closedPort(t), mustPort(peer)), nil
			}},
	} {
		for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
			t.Run(sc.name+"/"+proto, func(t *testing.T) {
				const svc = "10.96.1.30:80"
				good.hits.Store(0)
				src := newTestSource()
				a := startProxy(t, &config.Config{DetectTimeout: config.Duration{Duration: detectTimeout}},
					newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca), func(o *server.Options) { o.Source = src })
				rp := &routedProxy{proxy: a, src: src, addr: a.outbound(svc)}
				badEP, breakBad := sc.bad(t)
				goodEP := ep(good.addr)
				if sc.goodMeshed {
					goodEP = meshed(good.addr, b.inboundPort())
				}
				rp.src.set(dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
					Backends: []*api.WeightedBackend{wb("shop/web:80", 1)}}}, nil,
					&api.Backend{Key: "shop/web:80", Endpoints: []*api.Endpoint{badEP, goodEP}}))
				// The app's protocol is the one the peer proxy speaks to the app, too.
				c := h1Client()
				if proto == "HTTP/2" {
					c = h2cClient()
				}
				send := func(i int) result {
					cl := c
					if i%2 == 1 {
						return rp.do(cl, "POST", "/", nil, bytes.Repeat([]byte("p"), 2048))
					}
					return rp.do(cl, "GET", "/", nil, nil)
				}
				if breakBad != nil {
					for i := range 20 { // warm up: pooled connections to the bad endpoint
						if res := send(i); res.err != nil || res.status != 200 {
							t.Fatalf("warm-up request %d: %+v", i, res)
						}
					}
					breakBad()
				}
				// Concurrent, so that P2C also picks the bad endpoint when its
				// estimate is the higher one (the other's outstanding requests
				// count too).
				start := time.Now()
				const workers, each = 6, 20
				const n = workers * each
				errs := make(chan string, n)
				var wg sync.WaitGroup
				for w := range workers {
					wg.Go(func() {
						for k := range each {
							i := w*each + k
							res := send(i)
							switch _, marked := res.header["Weft-Unprocessed"]; {
							case res.err != nil || res.status != 200 || res.backend != "good":
								errs <- fmt.Sprintf("request %d: %v %d from %q (%s), want 200 from the good endpoint", i, res.err, res.status, res.backend, res.header.Get("Weft-Proxy-Error"))
							case i%2 == 1 && !strings.Contains(res.body, "body=2048"):
								errs <- fmt.Sprintf("request %d: the re-sent body arrived as %q", i, res.body)
							case marked:
								errs <- fmt.Sprintf("request %d: the mesh's marker reached the client", i)
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				if msg, failed := <-errs; failed {
					t.Fatalf("%s (and %d more)", msg, len(errs))
				}
				took := time.Since(start)
				text := rp.metricsText()
				resent := metricValue(text, "weft_route_unprocessed_resend_total", `rt_route="all"`, `reason="`+sc.reason+`"`)
				retries := metricValue(text, "weft_route_retry_total", `rt_route="all"`)
				ejections := metricValue(text, "weft_balancer_ejections_total", `backend="shop/web:80"`)
				t.Logf("%d requests in %v: re-sent %v (%s), ejections %v, retries %v, good hits %d", n, took.Round(time.Millisecond), resent, sc.reason, ejections, retries, good.hits.Load())
				if resent < 1 {
					t.Fatalf("weft_route_unprocessed_resend_total{reason=%q} = %v, want ≥ 1", sc.reason, resent)
				}
				// Ejected at its first refusal: only requests that picked it before
				// (at most one per worker) are re-sent, per ejection.
				if ejections < 1 || resent > ejections*workers {
					t.Fatalf("re-sent %v times with %v ejections: the endpoint was chosen again while ejected", resent, ejections)
				}
				if retries != 0 {
					t.Fatalf("weft_route_retry_total = %v: a re-send is not a retry", retries)
				}
			})
		}
	}

	t.Run("a request the application saw is not sent again", func(t *testing.T) {
		for _, viaMesh := range []bool{false, true} {
			const svc = "10.96.1.31:80"
			var seen atomic.Int64
			// Reads the whole request, then resets the connection.
			resetter := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				seen.Add(1)
				c, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					panic(http.ErrAbortHandler)
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}))
			src := newTestSource()
			a := startProxy(t, &config.Config{DetectTimeout: config.Duration{Duration: detectTimeout}},
				newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca), func(o *server.Options) { o.Source = src })
			rp := &routedProxy{proxy: a, src: src, addr: a.outbound(svc)}
			badEP, goodEP := ep(resetter), ep(good.addr)
			if viaMesh {
				badEP, goodEP = meshed(resetter, b.inboundPort()), meshed(good.addr, b.inboundPort())
			}
			rp.src.set(dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
				Backends: []*api.WeightedBackend{wb("shop/web:80", 1)}}}, nil,
				&api.Backend{Key: "shop/web:80", Endpoints: []*api.Endpoint{badEP, goodEP}}))
			good.hits.Store(0)
			failed := 0
			const n = 20
			for range n {
				if res := rp.do(h1Client(), "POST", "/", nil, []byte("pay once")); res.status == 502 {
					failed++
				}
			}
			text := rp.metricsText()
			total := 0.0
			for _, r := range []string{"connect", "handshake", "refused_stream", "goaway", "peer_app_refused"} {
				total += metricValue(text, "weft_route_unprocessed_resend_total", `rt_route="all"`, `reason="`+r+`"`)
			}
			t.Logf("mesh=%v: the resetting app saw %d requests, %d answered 502, good hits %d, re-sent %v", viaMesh, seen.Load(), failed, good.hits.Load(), total)
			if seen.Load() == 0 {
				t.Fatalf("mesh=%v: the resetting app saw no request", viaMesh)
			}
			if int64(failed) != seen.Load() {
				t.Fatalf("mesh=%v: %d requests seen by the app, %d answered 502: a seen request was sent again", viaMesh, seen.Load(), failed)
			}
			if good.hits.Load()+seen.Load() != n || total != 0 {
				t.Fatalf("mesh=%v: good %d + seen %d != %d, or re-sent %v != 0", viaMesh, good.hits.Load(), seen.Load(), n, total)
			}
		}
	})

	t.Run("an application cannot claim a request was not processed", func(t *testing.T) {
		const svc = "10.96.1.32:80"
		// The peer proxy's own marker, forged by the application behind it.
		forger := newApp(t, "forger", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Weft-Unprocessed", "app-refused")
			w.WriteHeader(http.StatusBadGateway)
			return true
		})
		src := newTestSource()
		a := startProxy(t, &config.Config{DetectTimeout: config.Duration{Duration: detectTimeout}},
			newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca), func(o *server.Options) { o.Source = src })
		rp := &routedProxy{proxy: a, src: src, addr: a.outbound(svc)}
		rp.src.set(dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
			Backends: []*api.WeightedBackend{wb("shop/web:80", 1)}}}, nil,
			&api.Backend{Key: "shop/web:80", Endpoints: []*api.Endpoint{meshed(forger.addr, b.inboundPort()), meshed(good.addr, b.inboundPort())}}))
		failed := 0
		const n = 20
		for range n {
			res := rp.do(h1Client(), "POST", "/", nil, []byte("pay once"))
			if res.status == http.StatusBadGateway {
				failed++
				if res.backend != "forger" {
					t.Fatalf("a 502 from %q, want the forger's own", res.backend)
				}
			}
			if _, ok := res.header["Weft-Unprocessed"]; ok {
				t.Fatal("the forged marker reached the client")
			}
		}
		t.Logf("the forger saw %d requests, %d answered 502", forger.hits.Load(), failed)
		if forger.hits.Load() == 0 || int64(failed) != forger.hits.Load() {
			t.Fatalf("the forger saw %d requests and %d were answered with its 502: want every one it saw answered, none sent again", forger.hits.Load(), failed)
		}
	})
}

// closableApp is an app naming itself "bad" whose stop shuts it down.
func closableApp(t *testing.T) (string, func()) {
	ln := listen(t)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Backend", "bad")
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	// As an application that exits does: stop listening, close the idle
	// connections (HTTP/2: GOAWAY first), and the clients learn of it.
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		time.Sleep(50 * time.Millisecond)
	}
}

// refusingPeer is a peer "proxy" with a valid certificate for id that speaks weft.h2
// and processes nothing: it resets every stream with REFUSED_STREAM, or with goAway
// answers the first one with a GOAWAY whose last stream ID is 0 and closes the
// connection.
func refusingPeer(t *testing.T, ca *testpki.CA, id string, goAway bool) string {
	cfg := newStore(t, ca.IssueValid(t, id), ca).ServerConfig(true)
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer raw.Close()
				raw.SetDeadline(time.Now().Add(10 * time.Second))
				c := tls.Server(raw, cfg)
				if c.Handshake() != nil {
					return
				}
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(c, preface); err != nil {
					return
				}
				fr := http2.NewFramer(c, c)
				fr.WriteSettings()
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() {
							fr.WriteSettingsAck()
						}
					case *http2.HeadersFrame:
						if goAway {
							fr.WriteGoAway(0, http2.ErrCodeNo, nil)
							time.Sleep(50 * time.Millisecond)
							return
						}
						fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
