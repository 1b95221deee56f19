package inboundpolicy

import (
	"maps"
	"slices"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
)

// The policy a proxy enforces before the control plane's first message (or without
// a control plane): the default policy the injector decided (WEFT_DEFAULT_INBOUND_POLICY),
// the Mesh's cluster networks (WEFT_CLUSTER_NETWORKS) and the pod's probe paths
// (WEFT_INBOUND_PROBE_PATHS), with the static configuration's port policies. It is
// built as the message the control plane would send for the same inputs
// (internal/inbound compiles default policies into the same authorizations), so the
// two agree and one Compile serves both.

// Bootstrap builds the policy of the inbound configuration in. A policy name the
// proxy does not know denies: a newer injector's name must not open the pod.
func Bootstrap(in *config.Inbound) *api.InboundPolicy {
	nets := in.ClusterNetworks
	if len(nets) == 0 {
		// Given none: the Mesh's default spec.clusterNetworks.
		nets = meshdefaults.ClusterNetworks()
	}
	probes := map[uint16][]string{}
	for _, pp := range in.ProbePaths {
		if !slices.Contains(probes[pp.Port], pp.Path) {
			probes[pp.Port] = append(probes[pp.Port], pp.Path)
		}
	}
	def := defaultServer(cmpOr(in.DefaultPolicy, config.PolicyAllUnauthenticated), nets)
	msg := &api.InboundPolicy{DefaultServer: def}
	ports := map[uint16]config.Policy{}
	for _, pp := range in.PortPolicies {
		ports[pp.Port] = pp.Policy
	}
	for p := range probes {
		if _, ok := ports[p]; !ok {
			ports[p] = cmpOr(in.DefaultPolicy, config.PolicyAllUnauthenticated)
		}
	}
	for _, port := range slices.Sorted(maps.Keys(ports)) {
		s := defaultServer(ports[port], nets)
		s.Port = uint32(port)
		s.ProbePaths = probes[port]
		msg.Servers = append(msg.Servers, s)
	}
	return msg
}

func cmpOr(p, def config.Policy) config.Policy {
	if p == "" {
		return def
	}
	return p
}

// defaultServer is the server of a default policy: for "all" any address, for
// "cluster" the cluster's networks; for "authenticated" any verified identity;
// deny no authorization; audit no authorization and audit mode.
func defaultServer(name config.Policy, clusterNets []string) *api.InboundServer {
	ref := &api.PolicyRef{Kind: "default", Name: string(name)}
	s := &api.InboundServer{Ref: ref}
	authz := &api.Authorization{Ref: ref}
	switch name {
	case config.PolicyAllUnauthenticated:
	case config.PolicyAllAuthenticated:
		authz.Identities = []*api.IdentitySet{{}}
	case config.PolicyClusterUnauthenticated:
		authz.Networks = []*api.NetworkSet{clusterSet(clusterNets)}
	case config.PolicyClusterAuthenticated:
		authz.Networks = []*api.NetworkSet{clusterSet(clusterNets)}
		authz.Identities = []*api.IdentitySet{{}}
	case config.PolicyAudit:
		s.Audit = true
		return s
	default: // deny, and names this proxy does not know
		return s
	}
	s.Authorizations = []*api.Authorization{authz}
	return s
}

func clusterSet(nets []string) *api.NetworkSet {
	set := &api.NetworkSet{}
	for _, n := range nets {
		set.Networks = append(set.Networks, &api.Network{Cidr: n})
	}
	return set
}
