package server_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// TestIdentityEnforcement: the proxies refuse peers that cannot prove the right
// identity, and the backend never sees their requests.
func TestIdentityEnforcement(t *testing.T) {
	past := time.Now().Add(-2 * time.Hour)
	expired := func(ca *testpki.CA, id string) *testpki.Leaf {
		return ca.Issue(t, id, past, past.Add(time.Hour))
	}
	tests := []struct {
		name string
		// build returns the pair options (certificates are made with the pair's CA,
		// so they are built lazily from a CA created here and shared).
		build   func(ca *testpki.CA) pairOpts
		svc     string
		wantErr string // Weft-Proxy-Error on the 502
	}{
		{"peer with the wrong identity", func(ca *testpki.CA) pairOpts { return pairOpts{} }, svcWrongID, "connection failed"},
		{"server certificate expired", func(ca *testpki.CA) pairOpts {
			return pairOpts{serverLeaf: expired(ca, spiffe("b", serverSA))}
		}, svcHTTPBin, "connection failed"},
		{"client certificate expired", func(ca *testpki.CA) pairOpts {
			return pairOpts{clientLeaf: expired(ca, spiffe("a", clientSA))}
		}, svcHTTPBin, "connection failed"},
		{"server certificate from another trust anchor", func(ca *testpki.CA) pairOpts {
			other := testpki.NewCA(t, "rogue anchor")
			return pairOpts{serverLeaf: other.IssueValid(t, spiffe("b", serverSA))}
		}, svcHTTPBin, "connection failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp := newMeshPairWithCA(t, tt.build)
			resp, err := h1Client().Get("http://" + mp.addr[tt.svc] + "/get")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Weft-Proxy-Error") != tt.wantErr {
				t.Fatalf("status %d error %q, want 502 %q", resp.StatusCode, resp.Header.Get("Weft-Proxy-Error"), tt.wantErr)
			}
			if v := metricValue(mp.b.metricsText(), "request_total", `direction="inbound"`); v > 0 {
				t.Fatalf("proxy B forwarded %v requests from a refused peer", v)
			}
		})
	}
}

// newMeshPairWithCA lets a test case make certificates from the pair's own CA.
func newMeshPairWithCA(t *testing.T, build func(*testpki.CA) pairOpts) *meshPair {
	ca := testpki.NewCA(t, "weft test anchor")
	o := build(ca)
	if o.serverLeaf == nil {
		o.serverLeaf = ca.IssueValid(t, spiffe("b", serverSA))
	}
	if o.clientLeaf == nil {
		o.clientLeaf = ca.IssueValid(t, spiffe("a", clientSA))
	}
	o.ca = ca
	return newMeshPair(t, o)
}

// TestInboundPolicy: with all-authenticated, a client without a certificate is
// refused at the handshake and plaintext requests are answered 403; with all-unauthenticated,
// plaintext reaches the app and is labelled no_identity.
func TestInboundPolicy(t *testing.T) {
	t.Run("all-authenticated refuses client without certificate", func(t *testing.T) {
		mp := newMeshPair(t, pairOpts{serverPolicy: config.PolicyAllAuthenticated})
		// Speak the mesh protocol but present no certificate.
		c, err := tls.Dial("tcp", mp.b.inbound, &tls.Config{
			MinVersion: tls.VersionTLS13, NextProtos: []string{identity.ALPNHTTP2}, InsecureSkipVerify: true,
		})
		if err == nil {
			// TLS 1.3 clients learn of the rejection on their first read.
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Fatalf("handshake without client certificate: %v, want certificate required", err)
		}
		// Plaintext redirected to the app is refused too: per request (so that
		// probes can pass), with a 403 that names the server whose policy denied it.
		plain := mp.b.inboundPlain(mp.be.httpbin)
		resp, err := h1Client().Get("http://" + plain + "/get")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "default/all-authenticated") {
			t.Fatalf("plaintext request to an all-authenticated app: %d %q, want 403 naming the server", resp.StatusCode, body)
		}
		if v := metricValue(mp.b.metricsText(), "inbound_http_authz_deny_total", `srv_kind="default"`, `srv_name="all-authenticated"`, `tls="no_identity"`); v != 1 {
			t.Fatalf("inbound_http_authz_deny_total = %v, want 1", v)
		}
		// The meshed client still gets through.
		resp, err = h1Client().Get("http://" + mp.addr[svcHTTPBin] + "/status/200")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("meshed request: %v %v", err, resp)
		}
		resp.Body.Close()
	})
	t.Run("all-unauthenticated accepts plaintext", func(t *testing.T) {
		mp := newMeshPair(t, pairOpts{})
		plain := mp.b.inboundPlain(mp.be.httpbin)
		resp, err := h1Client().Get("http://" + plain + "/status/202")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if v := metricValue(mp.b.metricsText(), "request_total", `direction="inbound"`, `tls="no_identity"`); v != 1 {
			t.Fatalf("inbound plaintext requests counted %v, want 1", v)
		}
	})
	t.Run("deny refuses meshed clients too", func(t *testing.T) {
		mp := newMeshPair(t, pairOpts{serverPolicy: config.PolicyDeny})
		resp, err := h1Client().Get("http://" + mp.addr[svcHTTPBin] + "/get")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
	})
	t.Run("opaque mTLS to a denied port is closed", func(t *testing.T) {
		mp := newMeshPair(t, pairOpts{serverPolicy: config.PolicyDeny})
		c, err := net.Dial("tcp", mp.addr[svcTCP])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "hello")
		c.(*net.TCPConn).CloseWrite()
		got, _ := io.ReadAll(c)
		if len(got) != 0 {
			t.Fatalf("denied connection answered %q", got)
		}
	})
}
