// Package defaultpolicy decides a pod's default inbound policy: the one that applies to
// its ports that no Server selects. The Mesh names one, a namespace and then a pod may
// choose another with config.weft.dev/default-inbound-policy, and the Mesh's
// inboundPolicyFloor bounds how weak that choice may be. Both the injector (which
// writes the policy a proxy enforces before it hears from the control plane) and the
// inbound policy compiler (which pushes it afterwards) ask this package, so the two
// always agree.
package defaultpolicy

import (
	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

// Policy is a default inbound policy in the form the decision needs: which clients it
// admits. The named policies are points of a small lattice: a client must be
// authenticated or not, from the cluster's networks or not; deny admits no one. audit
// admits like all-unauthenticated and flags every request.
type Policy struct {
	// Authenticated: only clients with a verified mesh identity.
	Authenticated bool
	// Cluster: only clients from the Mesh's clusterNetworks.
	Cluster bool
	// Deny: no client.
	Deny bool
	// Audit: every request is admitted and counted as a would-be denial.
	Audit bool
}

// Parse reads a policy name. ok is false for a name that is not one.
func Parse(name meshv1alpha1.InboundPolicy) (Policy, bool) {
	switch name {
	case meshv1alpha1.InboundAllUnauthenticated:
		return Policy{}, true
	case meshv1alpha1.InboundAllAuthenticated:
		return Policy{Authenticated: true}, true
	case meshv1alpha1.InboundClusterUnauthenticated:
		return Policy{Cluster: true}, true
	case meshv1alpha1.InboundClusterAuthenticated:
		return Policy{Authenticated: true, Cluster: true}, true
	case meshv1alpha1.InboundDeny:
		return Policy{Deny: true}, true
	case meshv1alpha1.InboundAudit:
		return Policy{Audit: true}, true
	}
	return Policy{}, false
}

// Name is the policy's name.
func (p Policy) Name() meshv1alpha1.InboundPolicy {
	switch {
	case p.Deny:
		return meshv1alpha1.InboundDeny
	case p.Audit:
		return meshv1alpha1.InboundAudit
	case p.Authenticated && p.Cluster:
		return meshv1alpha1.InboundClusterAuthenticated
	case p.Authenticated:
		return meshv1alpha1.InboundAllAuthenticated
	case p.Cluster:
		return meshv1alpha1.InboundClusterUnauthenticated
	}
	return meshv1alpha1.InboundAllUnauthenticated
}

// Within narrows p to what floor admits too: the clients both admit. audit is
// all-unauthenticated for this purpose, and stays audit only when the floor admits
// everyone.
func (p Policy) Within(floor Policy) Policy {
	if p.Deny || floor.Deny {
		return Policy{Deny: true}
	}
	out := Policy{Authenticated: p.Authenticated || floor.Authenticated, Cluster: p.Cluster || floor.Cluster}
	out.Audit = p.Audit && out == (Policy{})
	return out
}

// Source says where a pod's default policy was chosen.
type Source string

// The places a default policy is chosen.
const (
	SourceMesh      Source = "Mesh"
	SourceNamespace Source = "Namespace"
	SourcePod       Source = "Pod"
)

// Decision is a pod's default policy and how it came about.
type Decision struct {
	// Policy is what the pod's proxy enforces.
	Policy Policy
	// Source is where the policy was chosen (before the floor).
	Source Source
	// Chosen is the policy as chosen; Narrowed is set when the floor changed it.
	Chosen   meshv1alpha1.InboundPolicy
	Narrowed bool
	// Invalid names an annotation whose value is not a policy, which was ignored (the
	// level above it applies); empty when none was.
	Invalid string
}

// Decide returns the default policy of a pod: the pod's annotation, else its
// namespace's, else the Mesh's, narrowed to the Mesh's floor. namespaceValue and
// podValue are the annotation values ("" when absent). An annotation that names no
// policy is ignored and reported in Decision.Invalid: falling back to the level above
// can only be as strict as the floor allows, and it never widens access beyond what the
// platform team set.
func Decide(mesh meshv1alpha1.ProxySpec, namespaceValue, podValue string) Decision {
	d := Decision{Source: SourceMesh, Chosen: mesh.DefaultInboundPolicy}
	if d.Chosen == "" {
		d.Chosen = meshv1alpha1.InboundAllUnauthenticated
	}
	for _, level := range []struct {
		src Source
		v   string
	}{{SourceNamespace, namespaceValue}, {SourcePod, podValue}} {
		if level.v == "" {
			continue
		}
		if _, ok := Parse(meshv1alpha1.InboundPolicy(level.v)); !ok {
			d.Invalid = string(level.src)
			continue
		}
		d.Source, d.Chosen = level.src, meshv1alpha1.InboundPolicy(level.v)
	}
	chosen, ok := Parse(d.Chosen)
	if !ok {
		// The Mesh's schema allows only policy names; an unknown one (a newer
		// controller's value read by an older one) is treated as the strictest.
		chosen = Policy{Deny: true}
	}
	floor, _ := Parse(mesh.InboundPolicyFloor) // "" parses as nothing: no floor
	d.Policy = chosen.Within(floor)
	d.Narrowed = d.Policy != chosen
	return d
}
