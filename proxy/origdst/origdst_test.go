package origdst

import (
	"errors"
	"net"
	"testing"
)

// A connection that nobody redirected must not be mistaken for a redirected one:
// the proxy would otherwise dial itself. (The redirected path is exercised for real,
// with iptables in network namespaces, by test/netns.)
func TestNotRedirected(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"ipv6", "tcp6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen(tc.network, tc.addr)
			if err != nil {
				t.Skipf("no %s loopback: %v", tc.name, err)
			}
			defer ln.Close()
			c, err := net.Dial(tc.network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = Get(s.(*net.TCPConn))
			if !errors.Is(err, ErrNotRedirected) {
				t.Fatalf("Get = %v, want ErrNotRedirected", err)
			}
		})
	}
}
