// Package config is the proxy's internal model of what it knows: its listeners'
// behaviour, the inbound policy and the outbound destinations with their endpoints.
//
// The model is transport-neutral: a static file (see Parse) fills it today, and the
// destination service will fill the same types later. Types carry JSON tags because the
// static file is YAML or JSON read through sigs.k8s.io/yaml; every field's comment is its
// documentation (docs/proxy.md repeats it for users).
package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults shared by the proxy and its documentation.
const (
	DefaultOutboundPort  = 4140
	DefaultInboundPort   = 4143
	DefaultAdminPort     = 4191
	DefaultDetectTimeout = time.Second
	// DefaultTCPIdleTimeout closes opaque TCP connections that moved no byte for an
	// hour: long enough for idle database and message-queue connections, which
	// usually send keep-alives well within it, short enough that connections whose
	// peer vanished without a FIN do not pile up.
	DefaultTCPIdleTimeout = time.Hour
	// DefaultMaxInboundConnections and DefaultMaxOutboundConnections are sized for the
	// injected 250 MiB memory limit. Measured idle cost per accepted connection (Go
	// heap and stacks): about 95 KiB for a weft.h2 connection from a peer proxy, 36
	// KiB for an HTTP/1.1 one. 1024 x 95 KiB + 2048 x 36 KiB = 167 MiB at worst,
	// leaving room for the baseline (about 12 MiB) and requests in flight. One peer
	// proxy holds one weft.h2 connection, so 1024 inbound is 1024 client pods.
	DefaultMaxInboundConnections  = 1024
	DefaultMaxOutboundConnections = 2048
)

// Policy says which clients the inbound side accepts.
type Policy string

const (
	// PolicyAllUnauthenticated accepts meshed (mTLS) and unmeshed (plaintext) clients.
	PolicyAllUnauthenticated Policy = "all-unauthenticated"
	// PolicyAllAuthenticated accepts only clients that present a certificate that
	// chains to the trust roots (a meshed peer).
	PolicyAllAuthenticated Policy = "all-authenticated"
	// PolicyClusterUnauthenticated accepts meshed and unmeshed clients whose address
	// is in the cluster's networks (Inbound.ClusterNetworks).
	PolicyClusterUnauthenticated Policy = "cluster-unauthenticated"
	// PolicyClusterAuthenticated accepts meshed clients whose address is in the
	// cluster's networks.
	PolicyClusterAuthenticated Policy = "cluster-authenticated"
	// PolicyDeny refuses every connection.
	PolicyDeny Policy = "deny"
	// PolicyAudit accepts every client and counts and logs each as a would-be
	// denial (authz_name="audit").
	PolicyAudit Policy = "audit"
)

// KnownPolicy reports whether p is one of the policies above.
func KnownPolicy(p Policy) bool {
	switch p {
	case PolicyAllUnauthenticated, PolicyAllAuthenticated, PolicyClusterUnauthenticated,
		PolicyClusterAuthenticated, PolicyDeny, PolicyAudit:
		return true
	}
	return false
}

// policyNames is the list of KnownPolicy's names, for error messages.
const policyNames = "all-unauthenticated, all-authenticated, cluster-unauthenticated, cluster-authenticated, deny or audit"

// Protocol is a hint about what an endpoint speaks. Empty means "detect".
type Protocol string

const (
	ProtocolDetect Protocol = ""
	ProtocolHTTP1  Protocol = "http1"
	ProtocolHTTP2  Protocol = "http2"
	ProtocolOpaque Protocol = "opaque"
)

// Config is everything the proxy knows. The zero value is usable: no destinations
// (every connection is forwarded to its original destination in plaintext), inbound
// policy all-unauthenticated, detection timeout DefaultDetectTimeout.
type Config struct {
	// DetectTimeout bounds how long the proxy waits for a client's first bytes before
	// it treats the connection as opaque TCP. Default 1s. A Go duration string ("500ms").
	DetectTimeout Duration `json:"detectTimeout,omitempty"`
	// OpaquePorts are destination ports on which protocol detection is skipped, for
	// server-speaks-first protocols (MySQL 3306, SMTP 25, ...). Applies both inbound
	// (the local app's port) and outbound (the original destination's port).
	OpaquePorts []uint16 `json:"opaquePorts,omitempty"`
	// TCPIdleTimeout closes an opaque TCP connection (plaintext or weft.tcp, either
	// direction) after it moved no byte in either direction for this long; the check
	// runs every half of it, so closing may come up to half as late again. Default
	// 1h. A Go duration string.
	TCPIdleTimeout Duration `json:"tcpIdleTimeout,omitempty"`
	// Inbound configures the inbound side (port 4143).
	Inbound Inbound `json:"inbound,omitempty"`
	// Outbound configures the outbound side (port 4140).
	Outbound Outbound `json:"outbound,omitempty"`
	// Destinations are the services the outbound side knows, each matched by
	// ip:port (a ClusterIP and port) and/or by authority (an HTTP Host).
	Destinations []Destination `json:"destinations,omitempty"`
	// Tracing turns distributed tracing on until the control plane sends the pod's
	// inbound policy, whose tracing (the Mesh's spec.tracing, present or not) then
	// replaces it. For proxies run without a control plane (benchmarks, tests).
	Tracing *Tracing `json:"tracing,omitempty"`
}

// Tracing is the static form of the Mesh's tracing (proxy/api Tracing).
type Tracing struct {
	// Collector is the OTLP/gRPC receiver, host:port, spoken to in cleartext.
	Collector string `json:"collector"`
	// SamplingPerMillion is the share of traces the proxy starts, in millionths
	// (0 to 1000000), for requests that carry no sampling decision.
	SamplingPerMillion uint32 `json:"samplingPerMillion,omitempty"`
	// ServiceName is the spans' service.name resource attribute.
	ServiceName string `json:"serviceName,omitempty"`
}

// Inbound configures the inbound side.
type Inbound struct {
	// DefaultPolicy applies to every port without a PortPolicies entry until the
	// control plane sends the pod's inbound policy (which then replaces all of
	// this). One of all-unauthenticated (default), all-authenticated,
	// cluster-unauthenticated, cluster-authenticated, deny, audit.
	DefaultPolicy Policy `json:"defaultPolicy,omitempty"`
	// PortPolicies override DefaultPolicy for single application ports.
	PortPolicies []PortPolicy `json:"portPolicies,omitempty"`
	// ClusterNetworks are the CIDRs the cluster-* policies admit clients from.
	// Default: the Mesh's default (10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12,
	// 192.168.0.0/16, fd00::/8).
	ClusterNetworks []string `json:"clusterNetworks,omitempty"`
	// ProbePaths are the pod's HTTP probe paths by port: GET and HEAD requests to
	// them are admitted whatever the policy, so a restrictive policy never fails
	// the kubelet's probes.
	ProbePaths []ProbePath `json:"probePaths,omitempty"`
	// OriginalDstOverride replaces the SO_ORIGINAL_DST lookup for plaintext
	// connections with a fixed "ip:port". Only for tests and benchmarks that run
	// without iptables; leave empty in production.
	OriginalDstOverride string `json:"originalDstOverride,omitempty"`
	// MaxConnections bounds the connections the inbound port holds at once (peers'
	// weft.h2/weft.h1/weft.tcp and unmeshed clients'). A connection past it is
	// closed as soon as it is accepted and counted in
	// weft_connection_limit_refused_total. Default 1024.
	MaxConnections int `json:"maxConnections,omitempty"`
}

// PortPolicy is the policy of one local application port.
type PortPolicy struct {
	// Port is the application's port (the original destination port).
	Port uint16 `json:"port"`
	// Policy is one of the DefaultPolicy names.
	Policy Policy `json:"policy"`
}

// ProbePath is one HTTP probe of the pod: an exact path on an application port.
type ProbePath struct {
	Port uint16 `json:"port"`
	Path string `json:"path"`
}

// Outbound configures the outbound side.
type Outbound struct {
	// OriginalDstOverride replaces the SO_ORIGINAL_DST lookup with a fixed "ip:port".
	// Only for tests and benchmarks that run without iptables.
	OriginalDstOverride string `json:"originalDstOverride,omitempty"`
	// MaxConnections bounds the connections the app may hold open through the
	// outbound port at once; past it a connection is closed as soon as it is
	// accepted and counted in weft_connection_limit_refused_total. Default 2048.
	MaxConnections int `json:"maxConnections,omitempty"`
}

// Destination is one logical service.
type Destination struct {
	// Name is informational (logs, errors).
	Name string `json:"name,omitempty"`
	// Addresses are "ip:port" pairs (a Service's ClusterIP and port, IPv4 or
	// "[v6]:port") whose connections go to this destination.
	Addresses []string `json:"addresses,omitempty"`
	// Authorities are HTTP authorities ("web.default.svc.cluster.local:80"; a missing
	// port means 80) whose requests go to this destination, whatever the IP dialled.
	Authorities []string `json:"authorities,omitempty"`
	// Protocol is the default protocol hint for the endpoints below.
	Protocol Protocol `json:"protocol,omitempty"`
	// Endpoints are the destination's backends. At least one is required.
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one backend of a destination.
type Endpoint struct {
	// Address is the backend's IP (the pod IP).
	Address string `json:"address"`
	// Port is the backend application's port.
	Port uint16 `json:"port"`
	// Identity is the backend's SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<sa>). Empty means
	// the backend is not meshed and is reached in plaintext.
	Identity string `json:"identity,omitempty"`
	// Protocol overrides the destination's protocol hint.
	Protocol Protocol `json:"protocol,omitempty"`
	// ProxyPort is the meshed backend's proxy inbound port. Default 4143. Only used
	// when Identity is set.
	ProxyPort uint16 `json:"proxyPort,omitempty"`
}

// Duration is a time.Duration written as a Go duration string in files.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a duration string ("250ms") or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if uq, err := strconv.Unquote(s); err == nil {
		v, err := time.ParseDuration(uq)
		if err != nil {
			return fmt.Errorf("invalid duration %q", uq)
		}
		d.Duration = v
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid duration %s", s)
	}
	d.Duration = time.Duration(n)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(d.Duration.String())), nil
}

// ParseAddrPort parses "ip:port" or "[ipv6]:port" with a non-zero port.
func ParseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("invalid ip:port %q", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("invalid ip:port %q: port 0", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// NormalizeAuthority lower-cases an authority and adds ":80" when no port is given,
// so that "Web.NS.svc" and "web.ns.svc:80" match the same destination.
func NormalizeAuthority(a string) string {
	a = strings.ToLower(strings.TrimSuffix(a, "."))
	if a == "" {
		return a
	}
	if strings.HasPrefix(a, "[") {
		if strings.HasSuffix(a, "]") {
			return a + ":80"
		}
		return a
	}
	if i := strings.LastIndexByte(a, ':'); i < 0 {
		return a + ":80"
	}
	return a
}
