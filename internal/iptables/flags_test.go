package iptables

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseRuleArgs(t *testing.T) {
	c, err := ParseRuleArgs([]string{"--proxy-uid=3000", "--inbound-port=15006", "--outbound-port=15001",
		"--skip-inbound-ports=4191,9000-9100", "--skip-outbound-ports=5432", "--skip-subnets=10.96.0.0/12,fd00::/8",
		"--ipv6=false", "--validate"}, "validate")
	if err != nil {
		t.Fatal(err)
	}
	if c.ProxyUID != 3000 || c.InboundPort != 15006 || c.OutboundPort != 15001 || c.IPv6 ||
		!slices.Equal(c.SkipInboundPorts, []PortRange{{4191, 4191}, {9000, 9100}}) ||
		!slices.Equal(c.SkipOutboundPorts, []PortRange{{5432, 5432}}) || len(c.SkipSubnets) != 2 {
		t.Errorf("ParseRuleArgs = %+v", c)
	}
	// No arguments: weft-init's defaults.
	if c, err := ParseRuleArgs(nil); err != nil || c.ProxyUID != DefaultProxyUID || !c.IPv6 {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"flag of another program", []string{"--dry-run"}, "not defined"},
		{"validate not ignored", []string{"--validate"}, "not defined"},
		{"stray argument", []string{"extra"}, "unexpected arguments"},
		{"negative uid", []string{"--proxy-uid=-1"}, "UID"},
		{"port out of range", []string{"--outbound-port=65536"}, "65535"},
		{"same ports", []string{"--outbound-port=4143"}, "both 4143"},
		{"bad subnet", []string{"--skip-subnets=10.0.0.0/33"}, "skip-subnets"},
		{"help", []string{"-h"}, "unexpected -h"},
		{"too many skips", []string{"--skip-outbound-ports=" + strings.TrimSuffix(strings.Repeat("1000,", MaxSkips+1), ",")}, "more than the 256"},
	} {
		if _, err := ParseRuleArgs(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestProbeTargetAvoidsSkips(t *testing.T) {
	c := DefaultConfig()
	if got, ok := ProbeTarget(c); !ok || got != netip.MustParseAddrPort("192.0.2.1:80") {
		t.Errorf("default target %v %v", got, ok)
	}
	c.SkipSubnets = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	c.SkipOutboundPorts = []PortRange{{1, 443}}
	if got, ok := ProbeTarget(c); !ok || got != netip.MustParseAddrPort("198.51.100.1:8080") {
		t.Errorf("target with skips %v %v", got, ok)
	}
	c.SkipOutboundPorts = []PortRange{{1, 65535}}
	if got, ok := ProbeTarget(c); ok {
		t.Errorf("every port skipped, yet target %v", got)
	}
}

func TestMissing(t *testing.T) {
	c := DefaultConfig()
	rs := Render(c, IPv4)
	var full strings.Builder
	full.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:WEFT_INBOUND - [0:0]\n:WEFT_OUTBOUND - [0:0]\n")
	for _, r := range append(slices.Clone(rs.Rules), rs.Hooks...) {
		full.WriteString(r.String() + "\n")
	}
	full.WriteString("COMMIT\n")
	st, err := ParseSave(full.String())
	if err != nil {
		t.Fatal(err)
	}
	if m := Missing(rs, st); len(m) != 0 {
		t.Errorf("complete rules reported missing: %v", m)
	}
	empty, _ := ParseSave("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
	if m := Missing(rs, empty); len(m) != 4 {
		t.Errorf("empty table: %v, want 2 chains and 2 hooks", m)
	}
	st.Rules = st.Rules[1:] // one rule of WEFT_INBOUND gone
	if m := Missing(rs, st); len(m) != 1 || !strings.Contains(m[0], "WEFT_INBOUND holds") {
		t.Errorf("a missing rule: %v", m)
	}
}
