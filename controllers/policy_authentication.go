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

package controllers

import (
	"context"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/inbound"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// +kubebuilder:rbac:groups=policy.weft.dev,resources=meshtlsauthentications;networkauthentications,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.weft.dev,resources=meshtlsauthentications/status;networkauthentications/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// NewMeshTLSAuthenticationReconciler returns the reconciler that reports, in a
// MeshTLSAuthentication's status, whether its spec is usable and whether the namespaces
// its identityRefs name exist.
func NewMeshTLSAuthenticationReconciler(c client.Client, rec events.EventRecorder) *StatusReconciler[*policyv1alpha1.MeshTLSAuthentication, *policyv1alpha1.MeshTLSAuthenticationList] {
	return &StatusReconciler[*policyv1alpha1.MeshTLSAuthentication, *policyv1alpha1.MeshTLSAuthenticationList]{Client: c, Recorder: rec, kind: meshTLSAuthentications}
}

var meshTLSAuthentications = statusKind[*policyv1alpha1.MeshTLSAuthentication, *policyv1alpha1.MeshTLSAuthenticationList]{
	name:      "MeshTLSAuthentication",
	newObject: func() *policyv1alpha1.MeshTLSAuthentication { return &policyv1alpha1.MeshTLSAuthentication{} },
	newList:   func() *policyv1alpha1.MeshTLSAuthenticationList { return &policyv1alpha1.MeshTLSAuthenticationList{} },
	items:     func(l *policyv1alpha1.MeshTLSAuthenticationList) []client.Object { return objects(l.Items) },
	refs: func(m *policyv1alpha1.MeshTLSAuthentication) []string {
		var keys []string
		for _, ns := range identityRefNamespaces(m) {
			keys = append(keys, refKey("Namespace", "", ns))
		}
		return keys
	},
	watches:      []refWatch{{object: &corev1.Namespace{}, kind: "Namespace"}},
	conditions:   func(m *policyv1alpha1.MeshTLSAuthentication) *[]metav1.Condition { return &m.Status.Conditions },
	restate:      func(m *policyv1alpha1.MeshTLSAuthentication) { m.Status.ObservedGeneration = m.Generation },
	validate:     validateMeshTLSAuthentication,
	fixPrefix:    "Fix the spec (policies that require it authorize nothing until then): ",
	validMessage: "The authentication is valid",
	resolveRefs:  resolveIdentityRefs,
}

// validateMeshTLSAuthentication checks what the inbound compiler reads
// (inbound.IdentitySet: every identity one Weft can name, references of the two kinds)
// and the CRD's rule that exactly one of identities and identityRefs is set. The trust
// domain only renames Linkerd identities; it never decides validity.
func validateMeshTLSAuthentication(m *policyv1alpha1.MeshTLSAuthentication) field.ErrorList {
	spec := field.NewPath("spec")
	if (len(m.Spec.Identities) == 0) == (len(m.Spec.IdentityRefs) == 0) {
		return field.ErrorList{field.Invalid(spec, "", "set exactly one of identities or identityRefs")}
	}
	if _, err := inbound.IdentitySet(m, meshdefaults.TrustDomain); err != nil {
		return field.ErrorList{field.Invalid(spec, "", err.Error())}
	}
	return nil
}

// identityRefNamespaces are the namespaces an authentication's identityRefs name: a
// Namespace reference's name, a ServiceAccount reference's namespace (its own when
// omitted). A Namespace reference without a name means every namespace, nothing to
// resolve. ServiceAccounts themselves are identities and need no object to exist.
func identityRefNamespaces(m *policyv1alpha1.MeshTLSAuthentication) []string {
	var out []string
	for _, r := range m.Spec.IdentityRefs {
		ns := ""
		switch r.Kind {
		case "Namespace":
			ns = r.Name
		case "ServiceAccount":
			ns = r.Namespace
			if ns == "" {
				ns = m.Namespace
			}
		}
		if ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

// resolveIdentityRefs sets ResolvedRefs: True when every namespace the identityRefs
// name exists (or it names identities directly), otherwise False naming the missing
// namespaces. A missing namespace is most often a typo: no workload can hold an
// identity in it, so the authentication admits nobody from it.
func resolveIdentityRefs(ctx context.Context, c client.Reader, rec events.EventRecorder, m *policyv1alpha1.MeshTLSAuthentication, conds conditions) error {
	nss := identityRefNamespaces(m)
	if len(nss) == 0 {
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, ReasonNoReferences, "The authentication names its identities directly")
		return nil
	}
	var missing []missingRef
	for _, ns := range nss {
		ok, err := exists(ctx, c, types.NamespacedName{Name: ns}, &corev1.Namespace{})
		if err != nil {
			return err
		}
		if !ok {
			missing = append(missing, missingRef{kind: "Namespace", name: ns})
		}
	}
	if len(missing) > 0 {
		setMissing(rec, m, conds, missing, "; no workload holds an identity there until it exists")
		return nil
	}
	conds.set(meshv1alpha1.ConditionResolvedRefs, true, meshv1alpha1.ReasonResolved, "Every namespace the identityRefs name exists")
	return nil
}

// NewNetworkAuthenticationReconciler returns the reconciler that reports, in a
// NetworkAuthentication's status, whether its networks parse.
func NewNetworkAuthenticationReconciler(c client.Client, rec events.EventRecorder) *StatusReconciler[*policyv1alpha1.NetworkAuthentication, *policyv1alpha1.NetworkAuthenticationList] {
	return &StatusReconciler[*policyv1alpha1.NetworkAuthentication, *policyv1alpha1.NetworkAuthenticationList]{Client: c, Recorder: rec, kind: networkAuthentications}
}

var networkAuthentications = statusKind[*policyv1alpha1.NetworkAuthentication, *policyv1alpha1.NetworkAuthenticationList]{
	name:         "NetworkAuthentication",
	newObject:    func() *policyv1alpha1.NetworkAuthentication { return &policyv1alpha1.NetworkAuthentication{} },
	newList:      func() *policyv1alpha1.NetworkAuthenticationList { return &policyv1alpha1.NetworkAuthenticationList{} },
	items:        func(l *policyv1alpha1.NetworkAuthenticationList) []client.Object { return objects(l.Items) },
	conditions:   func(n *policyv1alpha1.NetworkAuthentication) *[]metav1.Condition { return &n.Status.Conditions },
	restate:      func(n *policyv1alpha1.NetworkAuthentication) { n.Status.ObservedGeneration = n.Generation },
	validate:     validateNetworkAuthentication,
	fixPrefix:    "Fix the spec (policies that require it authorize nothing until then): ",
	validMessage: "The authentication is valid",
	resolveRefs: func(_ context.Context, _ client.Reader, _ events.EventRecorder, _ *policyv1alpha1.NetworkAuthentication, conds conditions) error {
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, ReasonNoReferences, "The authentication names no other object")
		return nil
	},
}

// validateNetworkAuthentication checks what the inbound compiler reads
// (inbound.NetworkSet: every network parses) and the CRD's rule that every except
// entry lies inside its network.
func validateNetworkAuthentication(n *policyv1alpha1.NetworkAuthentication) field.ErrorList {
	if _, err := inbound.NetworkSet(n); err != nil {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "networks"), "", err.Error())}
	}
	var errs field.ErrorList
	for i, nw := range n.Spec.Networks {
		cidr := parseNetwork(nw.Cidr)
		for j, e := range nw.Except {
			if ex := parseNetwork(e); !cidr.Contains(ex.Addr()) || ex.Bits() < cidr.Bits() {
				errs = append(errs, field.Invalid(field.NewPath("spec", "networks").Index(i).Child("except").Index(j), e,
					"must be a network or address inside "+string(nw.Cidr)))
			}
		}
	}
	return errs
}

// parseNetwork reads a CIDR or a single address as a prefix; inbound.NetworkSet has
// checked that it parses.
func parseNetwork(s policyv1alpha1.NetworkAddress) netip.Prefix {
	if p, err := netip.ParsePrefix(string(s)); err == nil {
		return p.Masked()
	}
	a, _ := netip.ParseAddr(string(s))
	return netip.PrefixFrom(a, a.BitLen())
}
