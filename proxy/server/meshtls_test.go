package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/destination"
	"github.com/weftmesh/weft/proxy/discovery"
	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/server"
	"github.com/weftmesh/weft/proxy/transport"
)

// meshTLSWorld: client proxy A with nothing describing its destinations (the static
// source knows none, or the destination service is unreachable), a meshed app behind
// peer proxy B at 127.0.0.41 (B's inbound listens on 127.0.0.41:P, P being the
// inbound port A probes), and an unmeshed app at 127.0.0.42 with nothing on its
// port P. Each app counts the requests and connections it got.
type meshTLSWorld struct {
	a, b                   *proxy
	meshedApp, plainApp    string // HTTP ip:port
	meshedEcho, plainEcho  string // TCP echo ip:port (opaque ports)
	meshedHits, plainHits  atomic.Int32
	meshedConns, plainConn atomic.Int32
}

func newMeshTLSWorld(t *testing.T, mode transport.TLSMode, source func(t *testing.T, store *proxy) destination.Source) *meshTLSWorld {
	t.Helper()
	w := &meshTLSWorld{}
	ca := testpki.NewCA(t, "weft test anchor")
	w.meshedApp = serveHTTPOn(t, "127.0.0.41", func(r *http.Request) string { w.meshedHits.Add(1); return "meshed app" })
	w.plainApp = serveHTTPOn(t, "127.0.0.42", func(r *http.Request) string { w.plainHits.Add(1); return "plain app" })
	w.meshedEcho = serveEchoOn(t, "127.0.0.41", &w.meshedConns)
	w.plainEcho = serveEchoOn(t, "127.0.0.42", &w.plainConn)

	w.b = startProxy(t, &config.Config{}, newStore(t, ca.IssueValid(t, spiffe("b", serverSA)), ca))
	port := w.b.inboundPort()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.41"), port).String())
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.41:%d: %v", port, err)
	}
	go w.b.srv.ServeInbound(ln)

	aCfg := &config.Config{OpaquePorts: []uint16{mustPort(w.meshedEcho), mustPort(w.plainEcho)}}
	storeA := newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca)
	w.a = startProxy(t, aCfg, storeA, func(o *server.Options) {
		o.MeshTLS = transport.FallbackOptions{Mode: mode, ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			InboundPort: port, Timeout: 500 * time.Millisecond}
		if source != nil {
			o.Source = source(t, &proxy{store: storeA})
		}
	})
	return w
}

func serveHTTPOn(t *testing.T, ip string, body func(*http.Request) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body(r)) })}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

func serveEchoOn(t *testing.T, ip string, conns *atomic.Int32) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func get(t *testing.T, addr string) (int, string, http.Header) {
	t.Helper()
	resp, err := h1Client().Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// echo writes a line through addr and returns what came back (or the error).
func echo(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return "", err
	}
	b := make([]byte, 5)
	_, err = io.ReadFull(c, b)
	return string(b), err
}

// unavailableDiscovery is the destination service's real client pointed at an
// address where nothing listens: every lookup finds no answer.
func unavailableDiscovery(t *testing.T, p *proxy) destination.Source {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	c := discovery.New(discovery.Options{Addr: addr, Namespace: "a", Identity: p.store, FirstAnswerWait: 100 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestNoSilentPlaintextToMeshedPeer: with nothing describing the destination (the
// static source knows none: not found; or the destination service unreachable), a
// connection to a meshed pod goes over mTLS to its proxy, which sees A's identity;
// no plaintext leaves A toward it, for HTTP and for opaque TCP.
func TestNoSilentPlaintextToMeshedPeer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		source func(*testing.T, *proxy) destination.Source
	}{
		{"not found (pod IP not seen)", nil},
		{"destination service unreachable", unavailableDiscovery},
	} {
		for _, mode := range []transport.TLSMode{transport.Opportunistic, transport.Strict} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				w := newMeshTLSWorld(t, mode, tc.source)
				out := w.a.outbound(w.meshedApp)
				for range 3 {
					if st, body, _ := get(t, out); st != 200 || body != "meshed app" {
						t.Fatalf("status %d body %q, want 200 from the meshed app", st, body)
					}
				}
				if got, err := echo(w.a.outbound(w.meshedEcho)); err != nil || got != "ping\n" {
					t.Fatalf("opaque TCP echo %q, %v", got, err)
				}
				am, bm := w.a.metricsText(), w.b.metricsText()
				if v := metricValue(bm, "request_total", `direction="inbound"`, `client_id="`+spiffe("a", clientSA)+`"`); v != 3 {
					t.Errorf("B saw %v requests from A's identity, want 3:\n%s", v, bm)
				}
				if v := metricValue(bm, "tcp_open_total", `direction="inbound"`, `tls="true"`, `client_id="`+spiffe("a", clientSA)+`"`); v < 2 {
					t.Errorf("B saw %v mTLS connections from A, want HTTP's and TCP's:\n%s", v, bm)
				}
				if v := metricValue(am, "tcp_open_total", `direction="outbound"`, `peer="dst"`, `tls="no_identity"`); v > 0 {
					t.Errorf("A opened %v plaintext connections toward a meshed pod:\n%s", v, am)
				}
				if v := metricValue(am, "tcp_open_total", `direction="outbound"`, `peer="dst"`, `tls="true"`, `server_id="`+spiffe("b", serverSA)+`"`); v < 2 {
					t.Errorf("A opened %v mTLS connections to B, want at least 2:\n%s", v, am)
				}
				// Both the HTTP and the TCP connection went to 127.0.0.41: one probe.
				if v := metricValue(am, "weft_outbound_mesh_probe_total", `result="meshed"`); v != 1 {
					t.Errorf("%v probes, want 1 for one address:\n%s", v, am)
				}
				if w.meshedHits.Load() != 3 || w.meshedConns.Load() != 1 {
					t.Errorf("the apps got %d requests and %d connections, want 3 and 1", w.meshedHits.Load(), w.meshedConns.Load())
				}
			})
		}
	}
}

// TestUnmeshedPeerByMode: where no proxy of the mesh answers, Opportunistic sends
// plaintext (labelled with why it has no TLS) and Strict refuses, for HTTP (502 that
// says why) and opaque TCP (closed), and the app sees nothing.
func TestUnmeshedPeerByMode(t *testing.T) {
	t.Run("Opportunistic: plaintext, labelled", func(t *testing.T) {
		for _, tc := range []struct {
			name, reason string
			source       func(*testing.T, *proxy) destination.Source
		}{
			{"not found", transport.NoTLSNotProvided, nil},
			{"discovery unavailable", transport.NoTLSDiscoveryUnavailable, unavailableDiscovery},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := newMeshTLSWorld(t, transport.Opportunistic, tc.source)
				if st, body, _ := get(t, w.a.outbound(w.plainApp)); st != 200 || body != "plain app" {
					t.Fatalf("status %d body %q, want 200 from the unmeshed app", st, body)
				}
				if got, err := echo(w.a.outbound(w.plainEcho)); err != nil || got != "ping\n" {
					t.Fatalf("opaque TCP echo %q, %v", got, err)
				}
				am := w.a.metricsText()
				if v := metricValue(am, "tcp_open_total", `direction="outbound"`, `peer="dst"`, `tls="no_identity"`, `no_tls_reason="`+tc.reason+`"`); v != 2 {
					t.Errorf("%v plaintext connections labelled %s, want 2:\n%s", v, tc.reason, am)
				}
				if v := metricValue(am, "weft_outbound_mesh_probe_total", `result="not_meshed"`); v != 1 {
					t.Errorf("%v probes, want 1:\n%s", v, am)
				}
			})
		}
	})
	t.Run("Strict: refused", func(t *testing.T) {
		w := newMeshTLSWorld(t, transport.Strict, unavailableDiscovery)
		st, _, h := get(t, w.a.outbound(w.plainApp))
		if st != http.StatusBadGateway || !strings.Contains(h.Get("Weft-Proxy-Error"), "Strict") {
			t.Fatalf("status %d error %q, want 502 naming Strict mode", st, h.Get("Weft-Proxy-Error"))
		}
		if got, err := echo(w.a.outbound(w.plainEcho)); err == nil {
			t.Fatalf("opaque TCP echoed %q, want the connection closed", got)
		}
		// A gRPC client gets UNAVAILABLE (14), which its retry logic understands.
		req, _ := http.NewRequest("POST", "http://"+w.a.outbound(w.plainApp)+"/pkg.Svc/Method", strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		resp, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "14" {
			t.Fatalf("gRPC: status %d grpc-status %q, want 200 with 14", resp.StatusCode, resp.Header.Get("Grpc-Status"))
		}
		if w.plainHits.Load() != 0 || w.plainConn.Load() != 0 {
			t.Fatalf("the unmeshed apps got %d requests and %d connections in Strict mode", w.plainHits.Load(), w.plainConn.Load())
		}
		if am := w.a.metricsText(); !strings.Contains(am, "\nweft_outbound_plaintext_refused_total 3\n") {
			t.Errorf("want 3 refusals counted:\n%s", am)
		}
	})
	t.Run("Strict: outside the cluster networks is unchanged", func(t *testing.T) {
		w := newMeshTLSWorld(t, transport.Strict, nil)
		// A's fallback knows 127.0.0.0/8 as the cluster: a proxy built without
		// cluster networks sends plaintext to the same app.
		ca := testpki.NewCA(t, "anchor")
		a2 := startProxy(t, &config.Config{}, newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca), func(o *server.Options) {
			o.MeshTLS = transport.FallbackOptions{Mode: transport.Strict, ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
		})
		if st, body, _ := get(t, a2.outbound(w.plainApp)); st != 200 || body != "plain app" {
			t.Fatalf("status %d body %q, want 200 from the unmeshed app outside the cluster networks", st, body)
		}
	})
}

// fixedSource answers one authority with one configuration: what the destination
// service sends for an ExternalName Service.
type fixedSource struct {
	authority string
	cfg       *api.DestinationConfig
}

func (s fixedSource) Lookup(_ context.Context, t destination.Target) *api.DestinationConfig {
	if t.Authority == s.authority {
		return s.cfg
	}
	return nil
}

// TestExternalNameForwarded: a request for an ExternalName Service goes to the
// external name and the Service's port (it was answered 503 "no endpoints"), not to
// the address the app dialled.
func TestExternalNameForwarded(t *testing.T) {
	var hits atomic.Int32
	app := serveHTTPOn(t, "127.0.0.1", func(r *http.Request) string { hits.Add(1); return "external " + r.Host })
	port := mustPort(app)
	authority := "ext.shop.svc.cluster.local:" + strconv.Itoa(int(port))
	src := fixedSource{authority: authority, cfg: &api.DestinationConfig{
		Version: "1", Service: &api.ServiceRef{Namespace: "shop", Name: "ext", Port: uint32(port)},
		Authorities: []string{authority}, ExternalName: "localhost"}}
	a := startProxy(t, &config.Config{}, nil, func(o *server.Options) { o.Source = src })
	// The app dialled an address nothing listens on (TEST-NET-3): only the external
	// name can answer.
	out := a.outbound("203.0.113.9:" + strconv.Itoa(int(port)))
	req, _ := http.NewRequest("GET", "http://"+out+"/", nil)
	req.Host = authority
	resp, err := h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "external "+authority || hits.Load() != 1 {
		t.Fatalf("status %d body %q (%d hits), want 200 from the external name's server with the Host kept", resp.StatusCode, b, hits.Load())
	}
}

// TestIdentityEndpointNeverPlaintext: an endpoint discovery gives an identity is
// reached only through its proxy. When that proxy is down, the request fails (502,
// UNAVAILABLE for gRPC) and the TCP connection closes, while the application's own
// port, open on the same address, sees nothing: no path falls back to it.
func TestIdentityEndpointNeverPlaintext(t *testing.T) {
	var hits, conns atomic.Int32
	app := serveHTTPOn(t, "127.0.0.51", func(*http.Request) string { hits.Add(1); return "app" })
	tcpApp := serveEchoOn(t, "127.0.0.51", &conns)
	closed := listen(t) // a proxy port with nobody behind it
	closedPort := mustPort(closed.Addr().String())
	closed.Close()
	ca := testpki.NewCA(t, "anchor")
	dest := func(name, svc, ep string, protocol config.Protocol) config.Destination {
		a := netip.MustParseAddrPort(ep)
		return config.Destination{Name: name, Addresses: []string{svc}, Protocol: protocol, Endpoints: []config.Endpoint{{
			Address: a.Addr().String(), Port: a.Port(), Identity: spiffe("b", serverSA), ProxyPort: closedPort}}}
	}
	cfg := &config.Config{Destinations: []config.Destination{
		dest("web", "10.96.0.50:80", app, ""),
		dest("tcp", "10.96.0.51:9000", tcpApp, config.ProtocolOpaque),
	}}
	for _, mode := range []transport.TLSMode{transport.Opportunistic, transport.Strict} {
		t.Run(mode.String(), func(t *testing.T) {
			a := startProxy(t, cfg, newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca), func(o *server.Options) {
				o.MeshTLS = transport.FallbackOptions{Mode: mode, ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
			})
			if st, _, _ := get(t, a.outbound("10.96.0.50:80")); st != http.StatusBadGateway && st != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 502 or 503 with the endpoint's proxy down", st)
			}
			if got, err := echo(a.outbound("10.96.0.51:9000")); err == nil {
				t.Errorf("opaque TCP echoed %q, want the connection closed", got)
			}
			if hits.Load() != 0 || conns.Load() != 0 {
				t.Fatalf("the app got %d requests and %d connections in plaintext", hits.Load(), conns.Load())
			}
		})
	}
}
