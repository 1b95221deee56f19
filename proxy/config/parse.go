package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// Parse reads a static configuration file's content (YAML or JSON), rejects unknown
// fields, validates it and returns it with defaults applied. Errors name the field,
// e.g. `destinations[2].endpoints[0].address: invalid IP "x"`.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.ApplyDefaults()
	return &c, nil
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ApplyDefaults fills unset fields with their documented defaults.
func (c *Config) ApplyDefaults() {
	if c.DetectTimeout.Duration == 0 {
		c.DetectTimeout.Duration = DefaultDetectTimeout
	}
	if c.Inbound.DefaultPolicy == "" {
		c.Inbound.DefaultPolicy = PolicyAllUnauthenticated
	}
	if c.TCPIdleTimeout.Duration == 0 {
		c.TCPIdleTimeout.Duration = DefaultTCPIdleTimeout
	}
	if c.Inbound.MaxConnections == 0 {
		c.Inbound.MaxConnections = DefaultMaxInboundConnections
	}
	if c.Outbound.MaxConnections == 0 {
		c.Outbound.MaxConnections = DefaultMaxOutboundConnections
	}
	for i := range c.Destinations {
		d := &c.Destinations[i]
		for j := range d.Endpoints {
			e := &d.Endpoints[j]
			if e.Protocol == "" {
				e.Protocol = d.Protocol
			}
			if e.Identity != "" && e.ProxyPort == 0 {
				e.ProxyPort = DefaultInboundPort
			}
		}
	}
}

// Validate checks every field and returns all problems found, one per line, each
// prefixed with the field's path.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if c.DetectTimeout.Duration < 0 {
		add("detectTimeout", "must not be negative, got %s", c.DetectTimeout.Duration)
	}
	if c.TCPIdleTimeout.Duration < 0 {
		add("tcpIdleTimeout", "must not be negative, got %s", c.TCPIdleTimeout.Duration)
	}
	if c.Inbound.MaxConnections < 0 {
		add("inbound.maxConnections", "must not be negative, got %d", c.Inbound.MaxConnections)
	}
	if c.Outbound.MaxConnections < 0 {
		add("outbound.maxConnections", "must not be negative, got %d", c.Outbound.MaxConnections)
	}
	for i, p := range c.OpaquePorts {
		if p == 0 {
			add(fmt.Sprintf("opaquePorts[%d]", i), "port 0 is not a valid port")
		}
	}
	if t := c.Tracing; t != nil {
		if _, port, err := net.SplitHostPort(t.Collector); err != nil || port == "" {
			add("tracing.collector", "want host:port, got %q", t.Collector)
		}
		if t.SamplingPerMillion > 1_000_000 {
			add("tracing.samplingPerMillion", "must be at most 1000000 (every trace), got %d", t.SamplingPerMillion)
		}
	}
	if !validPolicy(c.Inbound.DefaultPolicy, true) {
		add("inbound.defaultPolicy", "unknown policy %q (want %s)", c.Inbound.DefaultPolicy, policyNames)
	}
	seenPorts := map[uint16]int{}
	for i, pp := range c.Inbound.PortPolicies {
		path := fmt.Sprintf("inbound.portPolicies[%d]", i)
		if pp.Port == 0 {
			add(path+".port", "port 0 is not a valid port")
		} else if j, dup := seenPorts[pp.Port]; dup {
			add(path+".port", "port %d already has a policy at inbound.portPolicies[%d]", pp.Port, j)
		} else {
			seenPorts[pp.Port] = i
		}
		if !validPolicy(pp.Policy, false) {
			add(path+".policy", "unknown policy %q (want %s)", pp.Policy, policyNames)
		}
	}
	for i, n := range c.Inbound.ClusterNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			add(fmt.Sprintf("inbound.clusterNetworks[%d]", i), "%q is not a CIDR (such as 10.0.0.0/8 or fd00::/8)", n)
		}
	}
	for i, pp := range c.Inbound.ProbePaths {
		path := fmt.Sprintf("inbound.probePaths[%d]", i)
		if pp.Port == 0 {
			add(path+".port", "port 0 is not a valid port")
		}
		if !strings.HasPrefix(pp.Path, "/") {
			add(path+".path", "%q is not an absolute path", pp.Path)
		}
	}
	if s := c.Inbound.OriginalDstOverride; s != "" {
		if _, err := ParseAddrPort(s); err != nil {
			add("inbound.originalDstOverride", "%v", err)
		}
	}
	if s := c.Outbound.OriginalDstOverride; s != "" {
		if _, err := ParseAddrPort(s); err != nil {
			add("outbound.originalDstOverride", "%v", err)
		}
	}
	seenAddr := map[netip.AddrPort]string{}
	seenAuth := map[string]string{}
	for i, d := range c.Destinations {
		path := fmt.Sprintf("destinations[%d]", i)
		if len(d.Addresses) == 0 && len(d.Authorities) == 0 {
			add(path, "needs at least one of addresses or authorities")
		}
		for j, a := range d.Addresses {
			p := fmt.Sprintf("%s.addresses[%d]", path, j)
			ap, err := ParseAddrPort(a)
			if err != nil {
				add(p, "%v", err)
				continue
			}
			if prev, dup := seenAddr[ap]; dup {
				add(p, "%s is already used by %s", ap, prev)
				continue
			}
			seenAddr[ap] = p
		}
		for j, a := range d.Authorities {
			p := fmt.Sprintf("%s.authorities[%d]", path, j)
			if err := validAuthority(a); err != nil {
				add(p, "%v", err)
				continue
			}
			n := NormalizeAuthority(a)
			if prev, dup := seenAuth[n]; dup {
				add(p, "%s is already used by %s", n, prev)
				continue
			}
			seenAuth[n] = p
		}
		if !validProtocol(d.Protocol) {
			add(path+".protocol", "unknown protocol %q (want http1, http2, opaque or empty)", d.Protocol)
		}
		if len(d.Endpoints) == 0 {
			add(path+".endpoints", "needs at least one endpoint")
		}
		for j, e := range d.Endpoints {
			p := fmt.Sprintf("%s.endpoints[%d]", path, j)
			if ip, err := netip.ParseAddr(e.Address); err != nil || ip.Zone() != "" {
				add(p+".address", "invalid IP %q", e.Address)
			}
			if e.Port == 0 {
				add(p+".port", "port is required")
			}
			if e.Identity != "" {
				if _, err := ParseSPIFFEID(e.Identity); err != nil {
					add(p+".identity", "%v", err)
				}
			} else if e.ProxyPort != 0 {
				add(p+".proxyPort", "only valid together with identity")
			}
			if !validProtocol(e.Protocol) {
				add(p+".protocol", "unknown protocol %q (want http1, http2, opaque or empty)", e.Protocol)
			}
		}
	}
	return errors.Join(errs...)
}

func validPolicy(p Policy, emptyOK bool) bool {
	switch p {
	case "":
		return emptyOK
	}
	return KnownPolicy(p)
}

func validProtocol(p Protocol) bool {
	switch p {
	case ProtocolDetect, ProtocolHTTP1, ProtocolHTTP2, ProtocolOpaque:
		return true
	}
	return false
}

func validAuthority(a string) error {
	if a == "" {
		return errors.New("empty authority")
	}
	if strings.ContainsAny(a, " \t\r\n/?#@") {
		return fmt.Errorf("invalid authority %q", a)
	}
	return nil
}

// SPIFFEID is a parsed spiffe://<trustDomain>/ns/<ns>/sa/<sa> identity.
type SPIFFEID struct {
	TrustDomain, Namespace, ServiceAccount string
}

// String renders the ID in its URI form.
func (id SPIFFEID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// ParseSPIFFEID parses a Weft workload identity. Weft's identities always have the
// /ns/<namespace>/sa/<serviceaccount> path (DESIGN.md).
func ParseSPIFFEID(s string) (SPIFFEID, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return SPIFFEID{}, fmt.Errorf("invalid SPIFFE ID %q: want spiffe://<trustDomain>/ns/<ns>/sa/<sa>", s)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[0] == "" || parts[1] != "ns" || parts[2] == "" || parts[3] != "sa" || parts[4] == "" {
		return SPIFFEID{}, fmt.Errorf("invalid SPIFFE ID %q: want spiffe://<trustDomain>/ns/<ns>/sa/<sa>", s)
	}
	for _, p := range []string{parts[0], parts[2], parts[4]} {
		if strings.ContainsAny(p, " \t\r\n?#%@:") || strings.ToLower(parts[0]) != parts[0] {
			return SPIFFEID{}, fmt.Errorf("invalid SPIFFE ID %q: bad character or upper-case trust domain", s)
		}
	}
	return SPIFFEID{TrustDomain: parts[0], Namespace: parts[2], ServiceAccount: parts[4]}, nil
}
