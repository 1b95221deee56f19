package server_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// TestConnectionLimit: past inbound.maxConnections a new connection is closed at
// once and counted; when one closes, a new one is accepted again.
func TestConnectionLimit(t *testing.T) {
	cfg := &config.Config{DetectTimeout: config.Duration{Duration: 10 * time.Second}}
	cfg.Inbound.MaxConnections = 2
	p := startProxy(t, cfg, nil)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.inbound)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// open reports whether c is still open: a read that times out rather than
	// ending means the proxy holds it (waiting for the client's first bytes).
	open := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, os.ErrDeadlineExceeded)
	}
	c1, c2 := dial(), dial()
	if !open(c1) || !open(c2) {
		t.Fatal("connections under the limit were closed")
	}
	start := time.Now()
	// The reset may even beat the end of connect(2) on loopback.
	if c3, err := net.Dial("tcp", p.inbound); err == nil {
		defer c3.Close()
		c3.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c3.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the connection past the limit was held open")
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the connection past the limit was closed after %s, want at once", d)
	}
	if got := metricValue(p.metricsText(), "weft_connection_limit_refused_total", `direction="inbound"`); got != 1 {
		t.Fatalf("weft_connection_limit_refused_total{direction=\"inbound\"} = %v, want 1", got)
	}
	c1.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		// The proxy frees c1's place when it sees c1 close: until then a new
		// connection may still be refused, even while dialling.
		if c, err := net.Dial("tcp", p.inbound); err == nil {
			ok := open(c)
			c.Close()
			if ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection accepted after one under the limit closed")
		}
	}
	if !open(c2) {
		t.Fatal("c2 was closed")
	}
}

// TestOpaqueRelayIdleTimeout: an opaque TCP relay that moves no byte for
// tcpIdleTimeout is closed; before it is, bytes flow both ways, across gaps longer
// than the deadline each direction reads under. Plaintext (spliced) and weft.tcp
// (TLS, whose reads must survive their deadlines).
func TestOpaqueRelayIdleTimeout(t *testing.T) {
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Echo lines and never close: an app holding an idle connection.
			go io.Copy(c, c)
		}
	}()
	const idle = 400 * time.Millisecond
	ca := testpki.NewCA(t, "anchor")
	store := newStore(t, ca.IssueValid(t, spiffe("default", serverSA)), ca)
	clientLeaf := ca.IssueValid(t, spiffe("default", clientSA))
	cfg := &config.Config{TCPIdleTimeout: config.Duration{Duration: idle}, OpaquePorts: []uint16{mustPort(ln.Addr().String())}}
	p := startProxy(t, cfg, store)
	for _, tc := range []struct {
		name string
		dial func(t *testing.T) net.Conn
	}{
		{"plaintext", func(t *testing.T) net.Conn {
			c, err := net.Dial("tcp", p.inboundPlain(ln.Addr().String()))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"weft.tcp", func(t *testing.T) net.Conn {
			c := peer{inbound: p.inbound, cert: &clientLeaf.TLS}.dial(t, identity.ALPNTCP)
			io.WriteString(c, "weft-dst: "+ln.Addr().String()+"\n")
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.dial(t)
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			// Traffic for longer than the timeout, with gaps longer than the
			// deadline each direction reads under, keeps the relay open.
			for range 4 {
				io.WriteString(c, "ping\n")
				if l, err := r.ReadString('\n'); err != nil || l != "ping\n" {
					t.Fatalf("echo: %q %v", l, err)
				}
				time.Sleep(idle * 3 / 4)
			}
			start := time.Now()
			_, err := r.ReadByte()
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("idle relay not closed: %v", err)
			}
			if d := time.Since(start); d > 3*idle {
				t.Fatalf("closed %s after the last byte, want about %s", d, idle)
			}
		})
	}
}
