// Package iptables is the rule model behind weft-init: it turns a Config into the NAT
// rules that send a pod's TCP traffic through the Weft proxy, plans the iptables
// commands that bring a network namespace from its current state to those rules, and
// runs them.
//
// Rendering and planning are pure functions (tested with tables); only Runner touches
// the system. The rules live in Weft's own chains in the nat table, hooked once from
// PREROUTING (inbound) and OUTPUT (outbound):
//
//	PREROUTING -p tcp -j WEFT_INBOUND
//	WEFT_INBOUND   skip inbound ports and skip subnets (source) RETURN,
//	               everything else REDIRECT --to-ports 4143
//	OUTPUT -p tcp -j WEFT_OUTBOUND
//	WEFT_OUTBOUND  proxy UID RETURN, loopback destinations via lo RETURN,
//	               skip subnets (destination) and skip outbound ports RETURN,
//	               everything else REDIRECT --to-ports 4140
//
// Re-applying flushes and refills Weft's chains and adds a hook only when it is
// missing, so running weft-init twice leaves iptables-save's output unchanged.
package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Chain and table names. They are part of the pod's visible state (iptables-save), so
// they are fixed rather than configurable.
const (
	Table         = "nat"
	InboundChain  = "WEFT_INBOUND"
	OutboundChain = "WEFT_OUTBOUND"
)

// Defaults match DESIGN.md's fixed ports and proxy UID.
const (
	DefaultProxyUID     = 2102
	DefaultInboundPort  = 4143
	DefaultOutboundPort = 4140
)

// DefaultSkipInboundPorts keeps the proxy's admin port (4191) reachable from outside the
// pod (Prometheus scrapes, kubelet probes), and its tap port (4190) reachable by the
// control plane's tap API, without going through the inbound listener. The tap server
// authenticates its one client itself (mTLS, the tap identity only), and the proxy
// binds both ports before the app starts, so no app can listen behind them and
// escape inbound policy.
var DefaultSkipInboundPorts = []PortRange{{4190, 4191}}

// Family is an IP family: each gets its own binary (iptables or ip6tables) and its own
// loopback range and subnets.
type Family int

const (
	IPv4 Family = iota
	IPv6
)

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// loopback is the destination range that loopback-to-self traffic uses. The whole
// 127/8 is loopback on Linux, not just 127.0.0.1.
func (f Family) loopback() netip.Prefix {
	if f == IPv6 {
		return netip.MustParsePrefix("::1/128")
	}
	return netip.MustParsePrefix("127.0.0.0/8")
}

// PortRange is an inclusive range of TCP ports; a single port has From == To.
type PortRange struct {
	From, To uint16
}

func (p PortRange) String() string {
	if p.From == p.To {
		return strconv.Itoa(int(p.From))
	}
	// iptables writes ranges with a colon.
	return fmt.Sprintf("%d:%d", p.From, p.To)
}

// ParsePorts parses a comma-separated list of ports and ranges ("4190,4191,9000-9100").
// An empty string is an empty list.
func ParsePorts(s string) ([]PortRange, error) {
	var out []PortRange
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(f, "-")
		from, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("invalid port %q: %w", f, err)
		}
		to := from
		if isRange {
			if to, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("invalid port range %q: %w", f, err)
			}
			if to < from {
				return nil, fmt.Errorf("invalid port range %q: end before start", f)
			}
		}
		out = append(out, PortRange{from, to})
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("not a number between 1 and 65535")
	}
	if n == 0 {
		return 0, fmt.Errorf("port 0 is not a port")
	}
	return uint16(n), nil
}

// ParseSubnets parses a comma-separated list of CIDRs, IPv4 and IPv6 mixed. A bare
// address is taken as a /32 or /128.
func ParseSubnets(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("invalid subnet %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("invalid subnet %q: %w", f, err)
		}
		// iptables would silently mask host bits; we do it visibly so the rendered
		// rule matches what iptables-save prints back.
		out = append(out, p.Masked())
	}
	return out, nil
}

// Config is what weft-init is told. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	// ProxyUID is the UID the proxy runs as. Its own connections are never redirected,
	// which is what stops the proxy from looping back into itself.
	ProxyUID int
	// InboundPort is the proxy's inbound listener; all other inbound TCP is redirected
	// to it.
	InboundPort uint16
	// OutboundPort is the proxy's outbound listener; all outbound TCP from the app is
	// redirected to it.
	OutboundPort uint16
	// SkipInboundPorts are local destination ports whose inbound connections reach the
	// app (or the proxy's admin port) directly.
	SkipInboundPorts []PortRange
	// SkipOutboundPorts are remote destination ports the app reaches directly.
	SkipOutboundPorts []PortRange
	// SkipSubnets are CIDRs whose traffic is never proxied: outbound connections to
	// them and inbound connections from them pass untouched.
	SkipSubnets []netip.Prefix
	// IPv6 also programs ip6tables. When false only IPv4 is redirected.
	IPv6 bool
}

// DefaultConfig is Weft's standard pod setup.
func DefaultConfig() Config {
	return Config{
		ProxyUID:         DefaultProxyUID,
		InboundPort:      DefaultInboundPort,
		OutboundPort:     DefaultOutboundPort,
		SkipInboundPorts: slices.Clone(DefaultSkipInboundPorts),
		IPv6:             true,
	}
}

// Validate reports configuration that would render nonsense rules.
func (c Config) Validate() error {
	if c.ProxyUID < 0 {
		return fmt.Errorf("proxy UID %d is negative", c.ProxyUID)
	}
	if c.InboundPort == 0 {
		return fmt.Errorf("inbound port must be set")
	}
	if c.OutboundPort == 0 {
		return fmt.Errorf("outbound port must be set")
	}
	if c.InboundPort == c.OutboundPort {
		return fmt.Errorf("inbound and outbound port are both %d", c.InboundPort)
	}
	return nil
}

// Families lists the IP families the config programs.
func (c Config) Families() []Family {
	if c.IPv6 {
		return []Family{IPv4, IPv6}
	}
	return []Family{IPv4}
}

// Rule is one rule in a chain: the arguments after "-A <chain>".
type Rule struct {
	Chain string
	Args  []string
}

// String renders the rule as iptables arguments, quoted for a shell.
func (r Rule) String() string {
	return "-A " + r.Chain + " " + shellJoin(r.Args)
}

// Ruleset is the desired state of one family: Weft's chains with their rules, and the
// hooks that jump into them from the built-in chains.
type Ruleset struct {
	Family Family
	// Chains are Weft's own chains, in creation order.
	Chains []string
	// Rules fill Weft's chains, in order.
	Rules []Rule
	// Hooks are the jumps from built-in chains. They are added once and never
	// duplicated.
	Hooks []Rule
}

// Render computes the rules for one family. It is a pure function of its input.
func Render(c Config, f Family) Ruleset {
	// Comments make the rules self-explaining in iptables-save output. They are plain
	// arguments here; Command.String quotes them for display.
	comment := func(text string) []string {
		return []string{"-m", "comment", "--comment", text}
	}
	rs := Ruleset{
		Family: f,
		Chains: []string{InboundChain, OutboundChain},
		Hooks: []Rule{
			{Chain: "PREROUTING", Args: concat([]string{"-p", "tcp"}, comment("weft inbound"), []string{"-j", InboundChain})},
			{Chain: "OUTPUT", Args: concat([]string{"-p", "tcp"}, comment("weft outbound"), []string{"-j", OutboundChain})},
		},
	}
	subnets := subnetsOf(c.SkipSubnets, f)

	// Inbound. Connections created in this namespace never pass nat PREROUTING (their
	// NAT is decided in OUTPUT), so there is no loopback case here.
	for _, p := range c.SkipInboundPorts {
		rs.Rules = append(rs.Rules, Rule{InboundChain, concat(
			[]string{"-p", "tcp", "--dport", p.String()}, comment("skip inbound port"), []string{"-j", "RETURN"})})
	}
	for _, s := range subnets {
		rs.Rules = append(rs.Rules, Rule{InboundChain, concat(
			[]string{"-s", s.String()}, comment("skip subnet"), []string{"-j", "RETURN"})})
	}
	rs.Rules = append(rs.Rules, Rule{InboundChain, concat(
		[]string{"-p", "tcp"}, comment("to weft inbound"), []string{"-j", "REDIRECT", "--to-ports", strconv.Itoa(int(c.InboundPort))})})

	// Outbound. The proxy's own UID first: without it the proxy's upstream
	// connections would be redirected back into the proxy.
	rs.Rules = append(rs.Rules, Rule{OutboundChain, concat(
		[]string{"-m", "owner", "--uid-owner", strconv.Itoa(c.ProxyUID)}, comment("proxy traffic"), []string{"-j", "RETURN"})})
	// Loopback-to-self: the app talking to localhost (its sidecars, the proxy's admin
	// port) is not meshed. Only loopback *destinations* are exempt: an app that dials
	// its own pod IP (or its own Service's ClusterIP, which the node resolves to that
	// pod IP) also leaves through lo, and that traffic is still redirected to the
	// outbound proxy, so a pod calling itself through its Service is routed, balanced
	// and measured like any other call.
	rs.Rules = append(rs.Rules, Rule{OutboundChain, concat(
		[]string{"-d", f.loopback().String(), "-o", "lo"}, comment("loopback"), []string{"-j", "RETURN"})})
	for _, s := range subnets {
		rs.Rules = append(rs.Rules, Rule{OutboundChain, concat(
			[]string{"-d", s.String()}, comment("skip subnet"), []string{"-j", "RETURN"})})
	}
	for _, p := range c.SkipOutboundPorts {
		rs.Rules = append(rs.Rules, Rule{OutboundChain, concat(
			[]string{"-p", "tcp", "--dport", p.String()}, comment("skip outbound port"), []string{"-j", "RETURN"})})
	}
	rs.Rules = append(rs.Rules, Rule{OutboundChain, concat(
		[]string{"-p", "tcp"}, comment("to weft outbound"), []string{"-j", "REDIRECT", "--to-ports", strconv.Itoa(int(c.OutboundPort))})})
	return rs
}

func subnetsOf(all []netip.Prefix, f Family) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range all {
		if p.Addr().Is4() == (f == IPv4) {
			out = append(out, p)
		}
	}
	return out
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
