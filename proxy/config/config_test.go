package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

const goodYAML = `
detectTimeout: 250ms
opaquePorts: [3306, 25]
inbound:
  defaultPolicy: all-authenticated
  portPolicies:
  - port: 8080
    policy: all-unauthenticated
destinations:
- name: web
  addresses: ["10.96.0.10:80", "[fd00::10]:80"]
  authorities: ["Web.default.svc.cluster.local"]
  protocol: http1
  endpoints:
  - address: 10.199.1.2
    port: 8080
    identity: spiffe://cluster.local/ns/default/sa/web
  - address: 10.199.1.3
    port: 8080
    protocol: http2
- name: db
  addresses: ["10.96.0.11:5432"]
  endpoints:
  - {address: "fd00::3", port: 5432, identity: "spiffe://cluster.local/ns/db/sa/pg", proxyPort: 14143}
`

func TestParseGood(t *testing.T) {
	c, err := Parse([]byte(goodYAML))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if c.DetectTimeout.Duration != 250*time.Millisecond {
		t.Errorf("detectTimeout = %s", c.DetectTimeout.Duration)
	}
	if c.TCPIdleTimeout.Duration != time.Hour || c.Inbound.MaxConnections != 1024 || c.Outbound.MaxConnections != 2048 {
		t.Errorf("defaults: tcpIdleTimeout %s, maxConnections %d/%d; want 1h, 1024 inbound, 2048 outbound",
			c.TCPIdleTimeout.Duration, c.Inbound.MaxConnections, c.Outbound.MaxConnections)
	}
	// What the file says, with defaults applied; proxy/destination's static source turns
	// it into routable destinations (tested there).
	web, db := c.Destinations[0], c.Destinations[1]
	if web.Name != "web" || len(web.Addresses) != 2 || web.Authorities[0] != "Web.default.svc.cluster.local" {
		t.Errorf("web = %+v", web)
	}
	if got := web.Endpoints[0]; got.Protocol != ProtocolHTTP1 || got.Identity == "" || got.ProxyPort != DefaultInboundPort {
		t.Errorf("endpoint 0 = %+v, want the destination's http1, meshed, proxy on 4143", got)
	}
	if got := web.Endpoints[1]; got.Protocol != ProtocolHTTP2 || got.Identity != "" || got.ProxyPort != 0 {
		t.Errorf("endpoint 1 = %+v, want http2 override, unmeshed", got)
	}
	if got := db.Endpoints[0]; got.ProxyPort != 14143 || got.Address != "fd00::3" {
		t.Errorf("db endpoint = %+v", got)
	}
	ix := NewIndex(c)
	if !ix.Opaque(3306) || ix.Opaque(80) {
		t.Errorf("opaque ports wrong")
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DetectTimeout.Duration != DefaultDetectTimeout || c.Inbound.DefaultPolicy != PolicyAllUnauthenticated {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"bad endpoint ip", `destinations: [{addresses: ["1.2.3.4:80"], endpoints: [{address: "x", port: 80}]}]`,
			`destinations[0].endpoints[0].address: invalid IP "x"`},
		{"third destination named", `destinations:
- {addresses: ["1.2.3.4:80"], endpoints: [{address: "10.0.0.1", port: 80}]}
- {addresses: ["1.2.3.5:80"], endpoints: [{address: "10.0.0.1", port: 80}]}
- {addresses: ["1.2.3.6:80"], endpoints: [{address: "10.0.0.1", port: 80}, {address: "10.0.0.300", port: 80}]}`,
			`destinations[2].endpoints[1].address: invalid IP "10.0.0.300"`},
		{"missing port", `destinations: [{addresses: ["1.2.3.4:80"], endpoints: [{address: "10.0.0.1"}]}]`,
			`destinations[0].endpoints[0].port: port is required`},
		{"bad service address", `destinations: [{addresses: ["1.2.3.4"], endpoints: [{address: "10.0.0.1", port: 1}]}]`,
			`destinations[0].addresses[0]: invalid ip:port "1.2.3.4"`},
		{"duplicate service address", `destinations:
- {addresses: ["1.2.3.4:80"], endpoints: [{address: "10.0.0.1", port: 1}]}
- {addresses: ["1.2.3.4:80"], endpoints: [{address: "10.0.0.1", port: 1}]}`,
			`destinations[1].addresses[0]: 1.2.3.4:80 is already used by destinations[0].addresses[0]`},
		{"no match keys", `destinations: [{endpoints: [{address: "10.0.0.1", port: 1}]}]`,
			`destinations[0]: needs at least one of addresses or authorities`},
		{"no endpoints", `destinations: [{authorities: ["a"], endpoints: []}]`,
			`destinations[0].endpoints: needs at least one endpoint`},
		{"bad identity", `destinations: [{authorities: ["a"], endpoints: [{address: "10.0.0.1", port: 1, identity: "web"}]}]`,
			`destinations[0].endpoints[0].identity: invalid SPIFFE ID "web"`},
		{"proxy port without identity", `destinations: [{authorities: ["a"], endpoints: [{address: "10.0.0.1", port: 1, proxyPort: 4143}]}]`,
			`destinations[0].endpoints[0].proxyPort: only valid together with identity`},
		{"bad protocol", `destinations: [{authorities: ["a"], protocol: "h3", endpoints: [{address: "10.0.0.1", port: 1}]}]`,
			`destinations[0].protocol: unknown protocol "h3"`},
		{"bad policy", `inbound: {defaultPolicy: open}`, `inbound.defaultPolicy: unknown policy "open"`},
		{"tracing collector without port", `tracing: {collector: "jaeger.tracing"}`, `tracing.collector: want host:port, got "jaeger.tracing"`},
		{"tracing sampling over 100%", `tracing: {collector: "jaeger:4317", samplingPerMillion: 1000001}`, `tracing.samplingPerMillion: must be at most 1000000`},
		{"bad port policy", `inbound: {portPolicies: [{port: 80, policy: x}]}`, `inbound.portPolicies[0].policy: unknown policy "x"`},
		{"bad cluster network", `inbound: {clusterNetworks: [10.0.0.0/8, 10.0.0.1]}`, `inbound.clusterNetworks[1]: "10.0.0.1" is not a CIDR`},
		{"probe path not absolute", `inbound: {probePaths: [{port: 80, path: healthz}]}`, `inbound.probePaths[0].path: "healthz" is not an absolute path`},
		{"probe port 0", `inbound: {probePaths: [{port: 0, path: /h}]}`, `inbound.probePaths[0].port: port 0`},
		{"bad detect timeout", `detectTimeout: soon`, `invalid duration "soon"`},
		{"negative detect timeout", `detectTimeout: -1s`, `detectTimeout: must not be negative`},
		{"unknown field", `destinatons: []`, `unknown field "destinatons"`},
		{"bad override", `outbound: {originalDstOverride: "nowhere"}`, `outbound.originalDstOverride: invalid ip:port "nowhere"`},
		{"opaque port zero", `opaquePorts: [0]`, `opaquePorts[0]: port 0`},
		{"negative tcp idle timeout", `tcpIdleTimeout: -1s`, `tcpIdleTimeout: must not be negative`},
		{"negative inbound limit", `inbound: {maxConnections: -1}`, `inbound.maxConnections: must not be negative`},
		{"negative outbound limit", `outbound: {maxConnections: -5}`, `outbound.maxConnections: must not be negative`},
		{"not yaml", `[`, `parse config`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseSPIFFEID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"valid", "spiffe://cluster.local/ns/default/sa/web", true},
		{"no scheme", "cluster.local/ns/default/sa/web", false},
		{"missing sa", "spiffe://cluster.local/ns/default", false},
		{"extra segment", "spiffe://cluster.local/ns/default/sa/web/x", false},
		{"empty namespace", "spiffe://cluster.local/ns//sa/web", false},
		{"upper-case trust domain", "spiffe://Cluster.local/ns/a/sa/b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseSPIFFEID(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseSPIFFEID(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if tt.ok && id.String() != tt.in {
				t.Fatalf("round trip %q -> %q", tt.in, id.String())
			}
		})
	}
}

// FuzzParse checks that the parser never panics, and that whatever it accepts builds
// an index, has parseable addresses and survives a second validation (the defaults it
// applies are valid).
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodYAML))
	f.Add([]byte(`{"destinations":[{"addresses":["1.2.3.4:80"],"endpoints":[{"address":"::1","port":1}]}]}`))
	f.Add([]byte("detectTimeout: 1s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails validation after defaults: %v", err)
		}
		NewIndex(c)
		for _, d := range c.Destinations {
			for _, a := range d.Addresses {
				if _, err := ParseAddrPort(a); err != nil {
					t.Fatalf("accepted address %s does not parse: %v", a, err)
				}
			}
			for _, e := range d.Endpoints {
				if _, err := netip.ParseAddr(e.Address); err != nil {
					t.Fatalf("accepted endpoint address %s does not parse: %v", e.Address, err)
				}
			}
		}
	})
}
