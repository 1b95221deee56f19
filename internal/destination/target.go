/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package destination

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/weftmesh/weft/internal/svcname"
	"github.com/weftmesh/weft/proxy/api"
)

// target is a parsed GetDestination target: a Service port by name, a cluster IP and
// port, or a name that is no Service of this cluster (never found).
type target struct {
	// Exactly one of: Namespace+Name (+Port), Namespace+Hostname+Subdomain (+Port),
	// Addr, or External.
	Namespace, Name string
	Port            int32
	// Hostname and Subdomain name a pod by its DNS name (a StatefulSet's pods):
	// <hostname>.<subdomain>.<namespace>.svc[.<cluster domain>].
	Hostname, Subdomain string
	Addr                netip.AddrPort
	// External is the authority when it names no Service of the cluster.
	External string
}

// podIndexKey is the key of the store's pod index a pod target resolves through
// ("" for a Service target): a change to a pod under that key may change it.
func (t target) podIndexKey() string {
	switch {
	case t.Addr.IsValid():
		return podIPKey(t.Addr.Addr().String())
	case t.Hostname != "":
		return podDNSKey(t.Namespace, t.Subdomain, t.Hostname)
	}
	return ""
}

func podIPKey(ip string) string { return "ip:" + ip }

func podDNSKey(ns, subdomain, hostname string) string {
	return "dns:" + ns + "/" + subdomain + "/" + hostname
}

// key identifies the target in the cache of compiled destinations.
func (t target) key() string {
	switch {
	case t.Addr.IsValid():
		return "addr:" + t.Addr.String()
	case t.External != "":
		return "ext:" + t.External
	case t.Hostname != "":
		return fmt.Sprintf("pod:%s/%s.%s:%d", t.Namespace, t.Hostname, t.Subdomain, t.Port)
	}
	return fmt.Sprintf("svc:%s/%s:%d", t.Namespace, t.Name, t.Port)
}

func (t target) String() string {
	switch {
	case t.Addr.IsValid():
		return t.Addr.String()
	case t.External != "":
		return t.External
	case t.Hostname != "":
		return fmt.Sprintf("%s/%s.%s:%d", t.Namespace, t.Hostname, t.Subdomain, t.Port)
	}
	return fmt.Sprintf("%s/%s:%d", t.Namespace, t.Name, t.Port)
}

// parseTarget reads a request's target. Errors are the caller's fault
// (InvalidArgument).
func parseTarget(req *api.GetDestination, clusterDomain string) (target, error) {
	switch t := req.GetTarget().(type) {
	case *api.GetDestination_Authority:
		return parseAuthority(t.Authority, clusterDomain)
	case *api.GetDestination_Address:
		ap, err := netip.ParseAddrPort(t.Address)
		if err != nil {
			return target{}, fmt.Errorf("address %q is not ip:port: %w", t.Address, err)
		}
		if ap.Port() == 0 {
			return target{}, fmt.Errorf("address %q has port 0", t.Address)
		}
		return target{Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
	}
	return target{}, errors.New("the request names no target: set authority or address")
}

// parseAuthority accepts <name>.<ns>[.svc[.<cluster domain>]][:port] (a missing port
// means 80, as for HTTP), an IP literal with a port (resolved like an address), and
// any other host name, which is a valid target but never a Service of this cluster.
func parseAuthority(authority, clusterDomain string) (target, error) {
	if authority == "" {
		return target{}, errors.New("the authority is empty")
	}
	host, port := authority, uint64(80)
	if h, p, err := net.SplitHostPort(authority); err == nil {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return target{}, fmt.Errorf("authority %q has an invalid port", authority)
		}
		host, port = h, n
	} else if strings.Count(authority, ":") == 1 {
		// SplitHostPort failed for another reason than a missing port.
		return target{}, fmt.Errorf("authority %q is malformed: %w", authority, err)
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return target{}, fmt.Errorf("authority %q has no host", authority)
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return target{Addr: netip.AddrPortFrom(ip.Unmap(), uint16(port))}, nil
	}
	// A pod resolves name.ns and name.ns.svc through its DNS search path, so those
	// name the Service too.
	if svc, ok := svcname.Parse(host, clusterDomain, svcname.Relative); ok {
		return target{Namespace: svc.Namespace, Name: svc.Name, Port: int32(port)}, nil
	}
	if hostname, subdomain, ns, ok := parsePodName(host, clusterDomain); ok {
		return target{Namespace: ns, Hostname: hostname, Subdomain: subdomain, Port: int32(port)}, nil
	}
	return target{External: net.JoinHostPort(host, strconv.FormatUint(port, 10))}, nil
}

// parsePodName reads the DNS name of a pod with a hostname and a subdomain (a
// StatefulSet's pods under their headless Service):
// <hostname>.<subdomain>.<namespace>.svc[.<cluster domain>] (host is lower case).
func parsePodName(host, clusterDomain string) (hostname, subdomain, ns string, ok bool) {
	rest, found := strings.CutSuffix(host, ".svc."+strings.TrimSuffix(strings.ToLower(clusterDomain), "."))
	if !found {
		if rest, found = strings.CutSuffix(host, ".svc"); !found {
			return "", "", "", false
		}
	}
	labels := strings.Split(rest, ".")
	if len(labels) != 3 {
		return "", "", "", false
	}
	for _, l := range labels {
		if len(validation.IsDNS1123Label(l)) > 0 {
			return "", "", "", false
		}
	}
	return labels[0], labels[1], labels[2], true
}
