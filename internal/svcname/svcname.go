// Package svcname is the one parser of Kubernetes Service host names,
// <name>.<namespace>.svc.<cluster domain>, with or without a port, honouring the
// configured cluster domain.
//
// Why one: four copies had drifted. One ignored the cluster domain (so
// web.shop.svc.example.org named a Service of a cluster whose domain is cluster.local),
// two checked the labels and two did not, two accepted a trailing dot and upper case and
// two did not. A name is either a Service of this cluster or an external host, and every
// component must draw that line in the same place.
//
// It imports only the standard library so that both planes can use it.
package svcname

import (
	"net"
	"strconv"
	"strings"
)

// Service names a Service of this cluster.
type Service struct {
	Namespace, Name string
}

// FQDN is the Service's fully qualified name under clusterDomain.
func (s Service) FQDN(clusterDomain string) string {
	return s.Name + "." + s.Namespace + ".svc." + clusterDomain
}

// Authority is the Service's FQDN with a port, as clients put it in :authority / Host.
func (s Service) Authority(clusterDomain string, port uint16) string {
	return s.FQDN(clusterDomain) + ":" + strconv.Itoa(int(port))
}

// Form says which host names Parse accepts.
type Form uint8

const (
	// FQDNOnly accepts <name>.<namespace>.svc.<cluster domain> only: the form of
	// ServiceProfile names and of authorities the control plane writes.
	FQDNOnly Form = iota
	// Relative also accepts what a pod's DNS search path completes to a Service:
	// <name>.<namespace> and <name>.<namespace>.svc. A one-label name is never a
	// Service here: its namespace depends on the asking pod.
	Relative
)

// Parse reads host as a Service host name. Case is ignored and a trailing dot (a rooted
// DNS name) is allowed, as DNS does. The Service's name must be a DNS-1035 label and
// the namespace a DNS-1123 label, as the API server requires; anything else is not a
// Service of this cluster and ok is false (the caller treats it as an external host).
func Parse(host, clusterDomain string, form Form) (svc Service, ok bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	clusterDomain = strings.ToLower(strings.TrimSuffix(clusterDomain, "."))
	name, rest, ok := strings.Cut(host, ".")
	if !ok {
		return Service{}, false
	}
	ns, rest, hasSvc := strings.Cut(rest, ".")
	switch {
	case !hasSvc:
		ok = form == Relative // name.ns
	case rest == "svc":
		ok = form == Relative // name.ns.svc
	default:
		domain, isSvc := strings.CutPrefix(rest, "svc.")
		ok = isSvc && domain == clusterDomain && clusterDomain != ""
	}
	if !ok || !isDNS1035Label(name) || !isDNS1123Label(ns) {
		return Service{}, false
	}
	return Service{Namespace: ns, Name: name}, true
}

// ParseAuthority reads host[:port] as a Service and port; a missing port is
// defaultPort. A port that is not 1-65535 is not an authority: ok is false.
func ParseAuthority(authority, clusterDomain string, form Form, defaultPort uint16) (svc Service, port uint16, ok bool) {
	host, port := authority, defaultPort
	if h, p, err := net.SplitHostPort(authority); err == nil {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return Service{}, 0, false
		}
		host, port = h, uint16(n)
	}
	svc, ok = Parse(host, clusterDomain, form)
	if !ok {
		return Service{}, 0, false
	}
	return svc, port, true
}

// isDNS1123Label: 1-63 of [a-z0-9-], starting and ending alphanumeric (RFC 1123, as
// Kubernetes validates namespace names).
func isDNS1123Label(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// isDNS1035Label is isDNS1123Label that starts with a letter (RFC 1035, as Kubernetes
// validates Service names).
func isDNS1035Label(s string) bool {
	return isDNS1123Label(s) && s[0] >= 'a' && s[0] <= 'z'
}
