package inboundpolicy

import (
	"net/netip"
	"testing"

	"github.com/weftmesh/weft/proxy/metrics"
)

// TestRelayRefusal is Targets' rule table: what the inbound side may forward
// to, with and without the tests' loopback escape hatch.
func TestRelayRefusal(t *testing.T) {
	app := netip.MustParseAddr("192.0.2.7") // stands for the pod's IP
	app6 := netip.MustParseAddr("fd00::7")
	r := &Targets{now: func() int64 { return 0 }, set: map[netip.Addr]bool{app: true, app6: true}}
	for _, p := range []uint16{4140, 4143, 4190, 4191} {
		r.AddOwnPort(p)
	}
	ok := metrics.NumRelayRefusals // stands for "allowed"
	tests := []struct {
		dst            string
		want           metrics.RelayRefusal
		wantLoopbackOK metrics.RelayRefusal // with UnsafeLoopbackApps
	}{
		{"192.0.2.7:8080", ok, ok},
		{"[fd00::7]:8080", ok, ok},
		{"[::ffff:192.0.2.7]:8080", ok, ok},
		{"192.0.2.7:4191", metrics.RelayProxyPort, metrics.RelayProxyPort},
		{"192.0.2.7:4140", metrics.RelayProxyPort, metrics.RelayProxyPort},
		{"192.0.2.7:4143", metrics.RelayProxyPort, metrics.RelayProxyPort},
		{"192.0.2.7:4190", metrics.RelayProxyPort, metrics.RelayProxyPort},
		{"127.0.0.1:4191", metrics.RelayProxyPort, metrics.RelayProxyPort},
		{"127.0.0.1:8080", metrics.RelayLoopback, ok},
		{"127.255.0.9:8080", metrics.RelayLoopback, ok},
		{"[::1]:8080", metrics.RelayLoopback, ok},
		{"[::ffff:127.0.0.1]:8080", metrics.RelayLoopback, ok},
		{"0.0.0.0:8080", metrics.RelayNotUnicast, metrics.RelayNotUnicast},
		{"[::]:8080", metrics.RelayNotUnicast, metrics.RelayNotUnicast},
		{"[::ffff:0.0.0.0]:8080", metrics.RelayNotUnicast, metrics.RelayNotUnicast},
		{"169.254.169.254:80", metrics.RelayNotUnicast, metrics.RelayNotUnicast},
		{"[fe80::1]:8080", metrics.RelayNotUnicast, metrics.RelayNotUnicast},
		{"[fd00::7%eth0]:8080", metrics.RelayNotUnicast, metrics.RelayNotUnicast},
		{"224.0.0.1:8080", metrics.RelayNotUnicast, metrics.RelayNotUnicast},
		{"[ff02::1]:8080", metrics.RelayNotUnicast, metrics.RelayNotUnicast},
		{"255.255.255.255:8080", metrics.RelayNotUnicast, metrics.RelayNotUnicast},
		{"10.0.0.9:8080", metrics.RelayNotLocal, metrics.RelayNotLocal},
		{"[fd00::8]:8080", metrics.RelayNotLocal, metrics.RelayNotLocal},
	}
	for _, tt := range tests {
		t.Run(tt.dst, func(t *testing.T) {
			dst := netip.MustParseAddrPort(tt.dst)
			for _, c := range []struct {
				allow bool
				want  metrics.RelayRefusal
			}{{false, tt.want}, {true, tt.wantLoopbackOK}} {
				r.allowLoopback = c.allow
				why, allowed := r.Refusal(dst)
				got := ok
				if !allowed {
					got = why
				}
				if got != c.want {
					t.Errorf("loopback apps %v: got %v (allowed %v), want %v", c.allow, why, allowed, c.want)
				}
			}
		})
	}
}
