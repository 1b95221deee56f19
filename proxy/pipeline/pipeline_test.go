package pipeline

import (
	"net/netip"
	"testing"
)

// canonicalAddrPort gives ap's string form: the header's own string when it is in
// that form already (without allocating), a new one otherwise.
func TestCanonicalAddrPort(t *testing.T) {
	for _, v := range []string{"10.0.0.7:8080", "[fd00::1]:80", "[::ffff:10.0.0.7]:80", "[fe80::1%eth0]:9"} {
		ap := netip.MustParseAddrPort(v)
		if got := canonicalAddrPort(v, ap); got != ap.String() {
			t.Errorf("canonicalAddrPort(%q) = %q, want %q", v, got, ap.String())
		}
		if n := testing.AllocsPerRun(20, func() { _ = canonicalAddrPort(v, ap) }); n != 0 {
			t.Errorf("canonicalAddrPort(%q): %.0f allocations, want 0", v, n)
		}
	}
	// Not canonical: a long IPv6 form parses to the same address, but the host is
	// ap's form, as before.
	v := "[fd00:0:0:0:0:0:0:1]:80"
	ap := netip.MustParseAddrPort(v)
	if got := canonicalAddrPort(v, ap); got != "[fd00::1]:80" {
		t.Errorf("canonicalAddrPort(%q) = %q, want [fd00::1]:80", v, got)
	}
}
