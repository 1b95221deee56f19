package defaultpolicy

import (
	"testing"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

func TestParseNameRoundTrip(t *testing.T) {
	for _, n := range []meshv1alpha1.InboundPolicy{
		meshv1alpha1.InboundAllUnauthenticated, meshv1alpha1.InboundAllAuthenticated,
		meshv1alpha1.InboundClusterUnauthenticated, meshv1alpha1.InboundClusterAuthenticated,
		meshv1alpha1.InboundDeny, meshv1alpha1.InboundAudit,
	} {
		p, ok := Parse(n)
		if !ok || p.Name() != n {
			t.Errorf("%s: parsed %+v (ok %v), named %s", n, p, ok, p.Name())
		}
	}
	if _, ok := Parse("allow-all"); ok {
		t.Error("an unknown name parsed")
	}
}

func TestDecide(t *testing.T) {
	mesh := func(def, floor meshv1alpha1.InboundPolicy) meshv1alpha1.ProxySpec {
		return meshv1alpha1.ProxySpec{DefaultInboundPolicy: def, InboundPolicyFloor: floor}
	}
	for _, tc := range []struct {
		name       string
		mesh       meshv1alpha1.ProxySpec
		ns, pod    string
		want       meshv1alpha1.InboundPolicy
		src        Source
		narrowed   bool
		invalidLvl string
	}{
		{"mesh default", mesh("", ""), "", "", "all-unauthenticated", SourceMesh, false, ""},
		{"namespace over mesh", mesh("all-authenticated", ""), "deny", "", "deny", SourceNamespace, false, ""},
		{"pod over namespace", mesh("", ""), "deny", "cluster-authenticated", "cluster-authenticated", SourcePod, false, ""},
		{"pod cannot go below the floor", mesh("all-authenticated", "all-authenticated"), "", "all-unauthenticated", "all-authenticated", SourcePod, true, ""},
		{"incomparable choices meet", mesh("", "cluster-unauthenticated"), "", "all-authenticated", "cluster-authenticated", SourcePod, true, ""},
		{"stricter than the floor stays", mesh("", "all-authenticated"), "deny", "", "deny", SourceNamespace, false, ""},
		{"audit under no floor", mesh("", ""), "audit", "", "audit", SourceNamespace, false, ""},
		{"audit under a floor is the floor", mesh("", "cluster-authenticated"), "", "audit", "cluster-authenticated", SourcePod, true, ""},
		{"a bad pod value is ignored", mesh("cluster-authenticated", ""), "", "allow-everyone", "cluster-authenticated", SourceMesh, false, "Pod"},
		{"a bad namespace value falls to the mesh", mesh("deny", ""), "nope", "", "deny", SourceMesh, false, "Namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.mesh, tc.ns, tc.pod)
			if d.Policy.Name() != tc.want || d.Source != tc.src || d.Narrowed != tc.narrowed || d.Invalid != tc.invalidLvl {
				t.Errorf("got %s from %s (narrowed %v, invalid %q), want %s from %s (narrowed %v, invalid %q)",
					d.Policy.Name(), d.Source, d.Narrowed, d.Invalid, tc.want, tc.src, tc.narrowed, tc.invalidLvl)
			}
		})
	}
}

// Within never admits a client that either side refuses: checked over every pair.
func TestWithinNeverWidens(t *testing.T) {
	all := []Policy{{}, {Authenticated: true}, {Cluster: true}, {Authenticated: true, Cluster: true}, {Deny: true}, {Audit: true}}
	admits := func(p Policy, authenticated, cluster bool) bool {
		return !p.Deny && (!p.Authenticated || authenticated) && (!p.Cluster || cluster)
	}
	for _, a := range all {
		for _, b := range all {
			m := a.Within(b)
			for _, authn := range []bool{false, true} {
				for _, cl := range []bool{false, true} {
					if admits(m, authn, cl) && !(admits(a, authn, cl) && admits(b, authn, cl)) {
						t.Errorf("%s within %s = %s admits authenticated=%v cluster=%v", a.Name(), b.Name(), m.Name(), authn, cl)
					}
					if !admits(m, authn, cl) && admits(a, authn, cl) && admits(b, authn, cl) {
						t.Errorf("%s within %s = %s refuses a client both admit", a.Name(), b.Name(), m.Name())
					}
				}
			}
		}
	}
}
