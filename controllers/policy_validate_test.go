package controllers

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
)

// The validators repeat the CRD's rules for objects stored before them (or written
// around them), so each rule is tested here on objects the API server would refuse.
func TestPolicyValidators(t *testing.T) {
	ap := func(target policyv1alpha1.TargetReference, refs ...policyv1alpha1.AuthenticationReference) *policyv1alpha1.AuthorizationPolicy {
		a := &policyv1alpha1.AuthorizationPolicy{Spec: policyv1alpha1.AuthorizationPolicySpec{TargetRef: target, RequiredAuthenticationRefs: refs}}
		a.Namespace = "shop"
		return a
	}
	netw := func(cidr string, except ...policyv1alpha1.NetworkAddress) *policyv1alpha1.NetworkAuthentication {
		return &policyv1alpha1.NetworkAuthentication{Spec: policyv1alpha1.NetworkAuthenticationSpec{
			Networks: []policyv1alpha1.Network{{Cidr: policyv1alpha1.NetworkAddress(cidr), Except: except}}}}
	}
	mtls := func(ids []policyv1alpha1.Identity, refs ...policyv1alpha1.IdentityReference) *policyv1alpha1.MeshTLSAuthentication {
		return &policyv1alpha1.MeshTLSAuthentication{Spec: policyv1alpha1.MeshTLSAuthenticationSpec{Identities: ids, IdentityRefs: refs}}
	}
	cases := []struct {
		name string
		errs func() string
		want string // "" = valid
	}{
		{"Server target by Linkerd's group", func() string {
			return errString(validateAuthorizationPolicy(ap(policyv1alpha1.TargetReference{Group: "policy.linkerd.io", Kind: "Server", Name: "s"})))
		}, ""},
		{"Service target", func() string {
			return errString(validateAuthorizationPolicy(ap(policyv1alpha1.TargetReference{Kind: "Service", Name: "s"})))
		}, "spec.targetRef.kind"},
		{"other namespace", func() string {
			return errString(validateAuthorizationPolicy(ap(policyv1alpha1.TargetReference{Kind: "Namespace", Name: "ops"})))
		}, "the policy's own namespace shop"},
		{"Secret authentication", func() string {
			return errString(validateAuthorizationPolicy(ap(policyv1alpha1.TargetReference{Kind: "Namespace", Name: "shop"},
				policyv1alpha1.AuthenticationReference{Kind: "Secret", Name: "x"})))
		}, "spec.requiredAuthenticationRefs[0].kind"},
		{"network with an address", func() string { return errString(validateNetworkAuthentication(netw("10.0.0.1"))) }, ""},
		{"network except inside", func() string {
			return errString(validateNetworkAuthentication(netw("10.0.0.0/8", "10.1.0.0/16", "10.2.3.4")))
		}, ""},
		{"network except outside", func() string {
			return errString(validateNetworkAuthentication(netw("10.0.0.0/8", "192.168.0.0/16")))
		}, "spec.networks[0].except[0]"},
		{"network except wider", func() string { return errString(validateNetworkAuthentication(netw("10.1.0.0/16", "10.0.0.0/8"))) }, "inside 10.1.0.0/16"},
		{"network does not parse", func() string { return errString(validateNetworkAuthentication(netw("10.0.0.0/33"))) }, `cidr "10.0.0.0/33"`},
		{"identities and refs both", func() string {
			return errString(validateMeshTLSAuthentication(mtls([]policyv1alpha1.Identity{"*"}, policyv1alpha1.IdentityReference{Kind: "Namespace"})))
		}, "exactly one"},
		{"neither", func() string { return errString(validateMeshTLSAuthentication(mtls(nil))) }, "exactly one"},
		{"Linkerd identity", func() string {
			return errString(validateMeshTLSAuthentication(mtls([]policyv1alpha1.Identity{"web.shop.serviceaccount.identity.linkerd.cluster.local"})))
		}, ""},
		{"identity Weft cannot name", func() string {
			return errString(validateMeshTLSAuthentication(mtls([]policyv1alpha1.Identity{"web.shop"})))
		}, `identity "web.shop"`},
		{"Pod reference", func() string {
			return errString(validateMeshTLSAuthentication(mtls(nil, policyv1alpha1.IdentityReference{Kind: "Pod", Name: "x"})))
		}, "not a ServiceAccount or a Namespace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.errs()
			if tc.want == "" && got != "" {
				t.Errorf("want valid, got %s", got)
			}
			if tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("errors %q, want one containing %q", got, tc.want)
			}
		})
	}
}

func errString(errs field.ErrorList) string {
	if len(errs) == 0 {
		return ""
	}
	return errs.ToAggregate().Error()
}
