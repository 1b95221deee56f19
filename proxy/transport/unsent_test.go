package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/metrics"
)

// TestUnsent: the failures before a request left are told apart from every other
// failure, through the wrapping of the transports that return them: a refused
// connect through the plaintext clients (Weft's HTTP/1.1 client, http.Transport for
// HTTP/1.1 and h2c) and to a peer proxy, a failed handshake with a peer proxy. A
// failure after the request went out (a reset, a timeout waiting for the answer) is
// not.
func TestUnsent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	// Accepts, reads a little, then closes: not TLS, and a request it took.
	rude, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rude.Close() })
	go func() {
		for {
			c, err := rude.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 16)
				c.Read(buf)
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}()
		}
	}()

	store := testStore(t, testpki.NewCA(t, "anchor"), "spiffe://t/ns/a/sa/a")
	o := Options{ConnectTimeout: time.Second, Metrics: metrics.New()}
	plain := NewPlain(o, metrics.Outbound)
	get := func(proto int, method, addr string) *http.Request {
		r, _ := http.NewRequest(method, "http://"+addr+"/", nil)
		r.ProtoMajor = proto
		return r
	}
	cases := []struct {
		name string
		err  func() error
		want metrics.ResendReason
		ok   bool
	}{
		{"HTTP/1.1 GET (Weft's client), connection refused", func() error {
			_, err := plain.For(get(1, "GET", closed)).RoundTrip(get(1, "GET", closed))
			return err
		}, metrics.ResendConnect, true},
		{"HTTP/1.1 POST (http.Transport), connection refused", func() error {
			_, err := plain.For(get(1, "POST", closed)).RoundTrip(get(1, "POST", closed))
			return err
		}, metrics.ResendConnect, true},
		{"h2c (http.Transport), connection refused", func() error {
			_, err := plain.For(get(2, "POST", closed)).RoundTrip(get(2, "POST", closed))
			return err
		}, metrics.ResendConnect, true},
		{"peer proxy, connection refused", func() error {
			m := NewMesh(Options{ConnectTimeout: time.Second, Metrics: metrics.New(), Identity: store})
			_, err := m.Dial(context.Background(), Peer{Addr: netip.MustParseAddrPort(closed), ID: "spiffe://t/ns/b/sa/b"}, "weft.h2")
			return fmt.Errorf("wrapped again: %w", err)
		}, metrics.ResendConnect, true},
		{"peer proxy, handshake failed", func() error {
			m := NewMesh(Options{ConnectTimeout: time.Second, Metrics: metrics.New(), Identity: store})
			_, err := m.Dial(context.Background(), Peer{Addr: netip.MustParseAddrPort(rude.Addr().String()), ID: "spiffe://t/ns/b/sa/b"}, "weft.h2")
			return err
		}, metrics.ResendHandshake, true},
		{"HTTP/1.1 POST, reset after the request was written", func() error {
			_, err := plain.For(get(1, "POST", rude.Addr().String())).RoundTrip(get(1, "POST", rude.Addr().String()))
			return err
		}, 0, false},
		{"a deadline", func() error { return context.DeadlineExceeded }, 0, false},
		{"no error", func() error { return nil }, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			got, ok := Unsent(err)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("Unsent(%v) = %v, %v; want %v, %v", err, got, ok, tc.want, tc.ok)
			}
			if tc.ok && errors.Unwrap(err) == nil {
				t.Fatalf("%v: the transport's error is no longer wrapped", err)
			}
		})
	}
}
