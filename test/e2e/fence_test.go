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

package e2e

import (
	"context"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestControlPlaneFence checks, on the installed cluster, what docs/security.md
// promises: weft-controller's ServiceAccount cannot read the trust anchor's Secret nor
// any Secret outside the chain, weft-system is fenced by NetworkPolicies (which the
// local cluster's bridge CNI accepts but does not enforce: the other tests passing with
// them applied is what this suite shows), and the controller's metrics refuse a scrape
// without an authorized token.
func TestControlPlaneFence(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const sa = "system:serviceaccount:" + controlPlane + ":weft-controller"
	can := func(verb, ns, resource, name string) bool {
		t.Helper()
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:               sa,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + controlPlane, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: verb, Namespace: ns, Resource: resource, Name: name},
		}}
		if err := env.client.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	for _, c := range []struct {
		verb, ns, resource, name string
		want                     bool
	}{
		{"get", controlPlane, "secrets", "weft-trust-anchor", false},
		{"list", controlPlane, "secrets", "", false},
		{"list", "", "secrets", "", false},
		{"get", "kube-system", "secrets", "", false},
		{"update", "kube-system", "configmaps", "coredns", false},
		{"get", controlPlane, "secrets", "weft-identity-issuer", true},
		{"update", demoNS, "configmaps", "weft-trust-roots", true},
	} {
		if got := can(c.verb, c.ns, c.resource, c.name); got != c.want {
			t.Errorf("weft-controller may %s %s %s/%s: %v, want %v", c.verb, c.resource, c.ns, c.name, got, c.want)
		}
	}

	for _, name := range []string{"weft-default-deny-ingress", "weft-controller"} {
		if err := env.client.Get(ctx, client.ObjectKey{Namespace: controlPlane, Name: name}, &networkingv1.NetworkPolicy{}); err != nil {
			t.Errorf("NetworkPolicy %s/%s: %v", controlPlane, name, err)
		}
	}

	pods := &corev1.PodList{}
	if err := env.client.List(ctx, pods, client.InNamespace(controlPlane), client.MatchingLabels{"app.kubernetes.io/name": "weft-controller"}); err != nil || len(pods.Items) == 0 {
		t.Fatalf("listing weft-controller pods: %v (%d)", err, len(pods.Items))
	}
	// The API server's pod proxy does not pass the caller's credentials on.
	_, err := env.kube.CoreV1().Pods(controlPlane).ProxyGet("https", pods.Items[0].Name, "9090", "/metrics", nil).DoRaw(ctx)
	if !apierrors.IsUnauthorized(err) {
		t.Errorf("scraping %s's metrics without a token: %v, want 401 Unauthorized", pods.Items[0].Name, err)
	}
}
