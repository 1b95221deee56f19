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

package controllers_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/testenv"
)

// controllerUser is the user name the API server gives weft-controller's pods.
const controllerUser = "system:serviceaccount:" + controlPlaneNS + ":weft-controller"

// installRBAC creates everything `kustomize build config/rbac` renders (the
// ServiceAccount, the ClusterRole and Role with their bindings, the ConfigMap guard
// policy) and returns a REST config that acts as weft-controller's ServiceAccount, so a
// test runs the controller with exactly the privileges an install gives it.
func installRBAC(t *testing.T, ctx context.Context, cfg *rest.Config, c client.Client) *rest.Config {
	t.Helper()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controlPlaneNS}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	objs, err := testenv.Kustomize(filepath.Join("config", "rbac"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	sa := rest.CopyConfig(cfg)
	// The API server adds the ServiceAccount groups to an impersonated ServiceAccount.
	sa.Impersonate = rest.ImpersonationConfig{UserName: controllerUser}
	return sa
}

// renderedDefault decodes `kustomize build config/default` into typed objects of the
// kinds the tests below look at.
func renderedDefault(t *testing.T) []runtime.Object {
	t.Helper()
	objs, err := testenv.Kustomize(filepath.Join("config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	var out []runtime.Object
	for _, u := range objs {
		var typed runtime.Object
		switch u.GetKind() {
		case "ClusterRole":
			typed = &rbacv1.ClusterRole{}
		case "Role":
			typed = &rbacv1.Role{}
		case "ClusterRoleBinding":
			typed = &rbacv1.ClusterRoleBinding{}
		case "RoleBinding":
			typed = &rbacv1.RoleBinding{}
		case "ValidatingAdmissionPolicy":
			typed = &admissionv1.ValidatingAdmissionPolicy{}
		case "ValidatingAdmissionPolicyBinding":
			typed = &admissionv1.ValidatingAdmissionPolicyBinding{}
		case "NetworkPolicy":
			typed = &networkingv1.NetworkPolicy{}
		default:
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, typed); err != nil {
			t.Fatalf("decoding %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		out = append(out, typed)
	}
	return out
}

func grants(r rbacv1.PolicyRule, group, resource string) bool {
	return (slices.Contains(r.APIGroups, group) || slices.Contains(r.APIGroups, "*")) &&
		(slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*"))
}

var writeVerbs = []string{"create", "update", "patch", "delete", "deletecollection", "*"}

// TestRenderedRBAC checks the privileges the install (config/default) gives, without an
// API server: what an auditor reading the manifests would check.
func TestRenderedRBAC(t *testing.T) {
	objs := renderedDefault(t)
	var (
		vap                       *admissionv1.ValidatingAdmissionPolicy
		binding                   *admissionv1.ValidatingAdmissionPolicyBinding
		netpols                   []*networkingv1.NetworkPolicy
		cmCreate, cmCreateGuarded bool
	)
	for _, o := range objs {
		switch o := o.(type) {
		case *rbacv1.ClusterRole:
			for _, r := range o.Rules {
				if grants(r, "", "secrets") {
					t.Errorf("ClusterRole %s grants %v on Secrets cluster-wide; they belong in the weft-system Role", o.Name, r.Verbs)
				}
				if grants(r, "cert-manager.io", "certificates") || grants(r, "cert-manager.io", "issuers") {
					if slices.ContainsFunc(r.Verbs, func(v string) bool { return slices.Contains(writeVerbs, v) }) {
						t.Errorf("ClusterRole %s grants %v on cert-manager objects cluster-wide", o.Name, r.Verbs)
					}
				}
				if grants(r, "", "configmaps") {
					for _, v := range r.Verbs {
						switch {
						case v == "create" && len(r.ResourceNames) == 0:
							// RBAC cannot name a create: the policy must guard it.
							cmCreate = true
						case slices.Contains(writeVerbs, v) || v == "get" || v == "list" || v == "watch":
							if !slices.Equal(r.ResourceNames, []string{controllers.TrustRootsName}) {
								t.Errorf("ClusterRole %s grants %s on ConfigMaps named %v, want only %s", o.Name, v, r.ResourceNames, controllers.TrustRootsName)
							}
						}
					}
				}
			}
		case *rbacv1.Role:
			for _, r := range o.Rules {
				if !grants(r, "", "secrets") {
					continue
				}
				if len(r.ResourceNames) == 0 {
					t.Errorf("Role %s/%s grants %v on every Secret of its namespace; name them", o.Namespace, o.Name, r.Verbs)
				}
				reads := slices.ContainsFunc(r.Verbs, func(v string) bool { return v == "get" || v == "list" || v == "watch" || v == "*" })
				if reads && slices.Contains(r.ResourceNames, controllers.TrustAnchorName) {
					t.Errorf("Role %s/%s lets the controller read Secret %s, the trust anchor's private key", o.Namespace, o.Name, controllers.TrustAnchorName)
				}
			}
		case *admissionv1.ValidatingAdmissionPolicy:
			if o.Name == "weft-controller-configmaps" {
				vap = o
			}
		case *admissionv1.ValidatingAdmissionPolicyBinding:
			if o.Spec.PolicyName == "weft-controller-configmaps" {
				binding = o
			}
		case *networkingv1.NetworkPolicy:
			netpols = append(netpols, o)
		}
	}
	if vap == nil || binding == nil {
		t.Fatalf("config/default renders no ValidatingAdmissionPolicy weft-controller-configmaps and binding (policy %v, binding %v)", vap != nil, binding != nil)
	}
	for _, rule := range vap.Spec.MatchConstraints.ResourceRules {
		if slices.Contains(rule.Resources, "configmaps") && slices.Contains(rule.Operations, admissionv1.Create) &&
			slices.Contains(rule.Operations, admissionv1.Update) && slices.Contains(rule.Operations, admissionv1.Delete) {
			cmCreateGuarded = true
		}
	}
	if cmCreate && !cmCreateGuarded {
		t.Errorf("the controller may create any ConfigMap and the policy does not cover ConfigMap create/update/delete: %+v", vap.Spec.MatchConstraints)
	}
	if !slices.Contains(binding.Spec.ValidationActions, admissionv1.Deny) {
		t.Errorf("the policy binding's actions are %v, want Deny", binding.Spec.ValidationActions)
	}
	if len(vap.Spec.MatchConditions) == 0 || !strings.Contains(vap.Spec.MatchConditions[0].Expression, controllerUser) {
		t.Errorf("the policy's match conditions %+v do not name %s", vap.Spec.MatchConditions, controllerUser)
	}

	// weft-system is fenced: a default deny, identity and destination only for meshed
	// pods, and the metrics port only for monitoring namespaces.
	var deny, controller *networkingv1.NetworkPolicy
	for _, np := range netpols {
		if np.Namespace != controlPlaneNS {
			continue
		}
		if len(np.Spec.PodSelector.MatchLabels) == 0 && len(np.Spec.PodSelector.MatchExpressions) == 0 && len(np.Spec.Ingress) == 0 {
			deny = np
		}
		if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] == "weft-controller" {
			controller = np
		}
	}
	if deny == nil || controller == nil {
		t.Fatalf("config/default renders no default-deny (%v) or weft-controller (%v) NetworkPolicy in %s", deny != nil, controller != nil, controlPlaneNS)
	}
	for _, rule := range controller.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port != nil && (p.Port.String() == "identity" || p.Port.String() == "destination") {
				for _, from := range rule.From {
					if from.PodSelector == nil || from.PodSelector.MatchLabels["weft.dev/injected"] != "true" {
						t.Errorf("the %s port admits %+v, want only meshed pods (weft.dev/injected=true)", p.Port, from)
					}
				}
				if len(rule.From) == 0 {
					t.Errorf("the %s port is open to every source", p.Port)
				}
			}
			if p.Port == nil || p.Port.String() != "metrics" {
				continue
			}
			if len(rule.From) == 0 {
				t.Errorf("the metrics port is open to every source")
			}
			for _, from := range rule.From {
				if from.NamespaceSelector == nil || from.NamespaceSelector.MatchLabels["weft.dev/monitoring"] != "enabled" {
					t.Errorf("the metrics port admits %+v, want only namespaces labelled weft.dev/monitoring=enabled", from)
				}
			}
		}
	}
}

// TestControllerRBAC acts as weft-controller's ServiceAccount against a real API server
// with the installed RBAC and policy: it can read the identity issuer's Secret but not
// the trust anchor's, no Secret outside it, and write no ConfigMap but weft-trust-roots.
func TestControllerRBAC(t *testing.T) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the test API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	admin, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	saCfg := installRBAC(t, ctx, cfg, admin)
	sa, err := client.New(saCfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: controlPlaneNS, Name: controllers.TrustAnchorName}, Data: map[string][]byte{"tls.key": []byte("secret")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: controlPlaneNS, Name: controllers.IdentityIssuerName}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "db-password"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "coredns"}, Data: map[string]string{"Corefile": ".:53 {}"}},
	} {
		if err := admin.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}

	forbidden := func(t *testing.T, what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Errorf("%s as weft-controller: err = %v, want Forbidden", what, err)
		}
	}
	key := func(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

	t.Run("Secrets", func(t *testing.T) {
		forbidden(t, "get the trust anchor's Secret", sa.Get(ctx, key(controlPlaneNS, controllers.TrustAnchorName), &corev1.Secret{}))
		forbidden(t, "list Secrets in weft-system", sa.List(ctx, &corev1.SecretList{}, client.InNamespace(controlPlaneNS)))
		forbidden(t, "list Secrets cluster-wide", sa.List(ctx, &corev1.SecretList{}))
		forbidden(t, "get a Secret of an application", sa.Get(ctx, key(appNS, "db-password"), &corev1.Secret{}))
		if err := sa.Get(ctx, key(controlPlaneNS, controllers.IdentityIssuerName), &corev1.Secret{}); err != nil {
			t.Errorf("get the identity issuer's Secret: %v", err)
		}
		if err := sa.List(ctx, &corev1.SecretList{}, client.InNamespace(controlPlaneNS),
			client.MatchingFields{"metadata.name": controllers.IdentityIssuerName}); err != nil {
			t.Errorf("list the identity issuer's Secret by name (what an informer does): %v", err)
		}
	})

	t.Run("ConfigMaps", func(t *testing.T) {
		// The policy becomes active a moment after it is created.
		eventually(t, 10*time.Second, func() error {
			err := sa.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "hijack"}})
			if err == nil {
				_ = admin.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "hijack"}})
				return fmt.Errorf("weft-controller created ConfigMap kube-system/hijack")
			}
			if !strings.Contains(err.Error(), "only ConfigMaps named weft-trust-roots") {
				return fmt.Errorf("creating kube-system/hijack: %v, want the policy's refusal", err)
			}
			return nil
		})
		coredns := &corev1.ConfigMap{}
		if err := admin.Get(ctx, key("kube-system", "coredns"), coredns); err != nil {
			t.Fatal(err)
		}
		coredns.Data["Corefile"] = "hijacked"
		forbidden(t, "update kube-system/coredns", sa.Update(ctx, coredns))
		forbidden(t, "delete kube-system/coredns", sa.Delete(ctx, coredns))
		apply := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"namespace": "kube-system", "name": "coredns"}, "data": map[string]any{"Corefile": "hijacked"}}}
		forbidden(t, "apply kube-system/coredns", sa.Patch(ctx, apply, client.Apply, client.FieldOwner("weft-controller"), client.ForceOwnership))
		forbidden(t, "list every ConfigMap", sa.List(ctx, &corev1.ConfigMapList{}))

		bundle := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"namespace": appNS, "name": controllers.TrustRootsName}, "data": map[string]any{"ca-bundle.crt": "x"}}}
		if err := sa.Patch(ctx, bundle, client.Apply, client.FieldOwner("weft-controller"), client.ForceOwnership); err != nil {
			t.Errorf("applying %s/%s: %v", appNS, controllers.TrustRootsName, err)
		}
		if err := sa.List(ctx, &corev1.ConfigMapList{}, client.MatchingFields{"metadata.name": controllers.TrustRootsName}); err != nil {
			t.Errorf("listing the published bundles by name: %v", err)
		}
		if err := sa.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: controllers.TrustRootsName}}); err != nil {
			t.Errorf("deleting %s/%s: %v", appNS, controllers.TrustRootsName, err)
		}
	})
}

// TestMeshAnchorWithoutCertificateRequest: the reconciler reads the anchor certificate
// from the anchor's CertificateRequest, never from its Secret (the manager runs with
// the installed RBAC, which refuses that Secret). When the request is gone (deleted by
// hand, or by cert-manager's revision history), the anchor in the identity issuer's
// chain is used: the Mesh stays Ready with the same anchor.
func TestMeshAnchorWithoutCertificateRequest(t *testing.T) {
	m := startMeshEnv(t)
	ctx := context.Background()
	c := m.c
	if err := c.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mesh.weft.dev/v1alpha1", "kind": "Mesh",
		"metadata": map[string]any{"name": "default"}, "spec": map[string]any{"trustDomain": meshTD},
	}}); err != nil {
		t.Fatal(err)
	}
	serial := waitMeshReady(t, c, 30*time.Second).Status.TrustAnchor.SerialNumber
	if err := c.DeleteAllOf(ctx, &cmv1.CertificateRequest{}, client.InNamespace(controlPlaneNS)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		var reqs cmv1.CertificateRequestList
		if err := c.List(ctx, &reqs, client.InNamespace(controlPlaneNS)); err != nil {
			return err
		}
		if len(reqs.Items) != 0 {
			return fmt.Errorf("%d CertificateRequests left", len(reqs.Items))
		}
		return nil
	})
	// A namespace joining the mesh makes the reconciler run; its bundle copy shows it ran.
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS,
		Labels: map[string]string{controllers.InjectAnnotation: "enabled"}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		_, err := m.bundle(ctx, appNS)
		return err
	})
	mesh := waitMeshReady(t, c, 5*time.Second)
	if got := mesh.Status.TrustAnchor.SerialNumber; got != serial {
		t.Errorf("trust anchor serial %s after the requests were deleted, want %s", got, serial)
	}
	if !conditionIs(mesh.Status.Conditions, "TrustAnchorReady", metav1.ConditionTrue, controllers.ReasonIssued, mesh.Generation) {
		t.Errorf("TrustAnchorReady = %+v, want True/Issued", mesh.Status.Conditions)
	}
}
