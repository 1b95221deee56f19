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

package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/gatewayapi"
	"github.com/weftmesh/weft/internal/install"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// minKubernetes is the oldest Kubernetes Weft installs on: its admission policies are
// admissionregistration.k8s.io/v1 ValidatingAdmissionPolicies (GA in 1.30).
const minKubernetes = "v1.30.0"

// certManagerCRDs are the cert-manager kinds the install creates or the Mesh uses.
var certManagerCRDs = []string{
	"certificates.cert-manager.io", "certificaterequests.cert-manager.io",
	"issuers.cert-manager.io", "clusterissuers.cert-manager.io",
}

// certManagerWebhook is the name of cert-manager's validating webhook: without it
// serving, creating the install's Issuer and Certificate fails.
const certManagerWebhook = "webhook.cert-manager.io"

// checkPre runs the checks before an install: the API server and its version,
// cert-manager, the permissions to create what the install creates, no install by
// another tool, and the Gateway API CRDs.
func checkPre(ctx context.Context, kc *kubeClients, mode gatewayapi.Mode) []checkResult {
	var out []checkResult
	add := func(section string, ok bool, hint, format string, args ...any) {
		out = append(out, checkResult{section: section, ok: ok, message: fmt.Sprintf(format, args...), hint: hint})
	}
	const api = "Kubernetes API"
	v, err := kc.kube.Discovery().ServerVersion()
	if err != nil {
		add(api, false, "check the kubeconfig (--kubeconfig, $KUBECONFIG) and that the cluster is running",
			"cannot reach the API server at %s: %v", kc.config.Host, err)
		return out
	}
	add(api, true, "", "API server %s reachable", kc.config.Host)
	sv, err := version.ParseGeneric(v.GitVersion)
	supported := err == nil && sv.AtLeast(version.MustParseGeneric(minKubernetes))
	add(api, supported, "upgrade the cluster: Weft's admission policies need ValidatingAdmissionPolicy v1",
		"Kubernetes %s (Weft needs %s or newer)", v.GitVersion, minKubernetes)

	out = append(out, checkCertManager(ctx, kc.client)...)

	var in *gatewayapi.Installed
	if mode != gatewayapi.None {
		if in, err = gatewayapi.Inspect(ctx, kc.client); err != nil {
			add("Gateway API", false, "", "%v", err)
			mode = gatewayapi.None
		}
	}
	p, err := install.NewPlan(in, mode)
	if err != nil {
		add("Permissions", false, "", "rendering the install: %v", err)
		return out
	}
	out = append(out, checkPermissions(ctx, kc, p)...)

	const existing = "Existing installation"
	if clash := existingInstall(ctx, kc.client); clash != "" {
		add(existing, false, "upgrade it the way it was installed (helm upgrade, kubectl apply -k), or weft install --force to take it over", "%s", clash)
	} else {
		add(existing, true, "", "no Weft installed by another tool")
	}

	if in != nil {
		out = append(out, checkGatewayAPIInstalled(in, true)...)
		d := p.GatewayAPI
		add("Gateway API", true, "", "weft install --gateway-api=%s: %s", mode, d.Message)
	}
	return out
}

func checkCertManager(ctx context.Context, c client.Client) []checkResult {
	const section = "cert-manager"
	var out []checkResult
	add := func(ok bool, hint, format string, args ...any) {
		out = append(out, checkResult{section: section, ok: ok, message: fmt.Sprintf(format, args...), hint: hint})
	}
	const installHint = "install cert-manager first (https://cert-manager.io/docs/installation/; this repository: kubectl apply --server-side -k config/cert-manager)"
	var missing []string
	for _, name := range certManagerCRDs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		switch err := c.Get(ctx, types.NamespacedName{Name: name}, crd); {
		case apierrors.IsNotFound(err) || (err == nil && !crdEstablished(crd)):
			missing = append(missing, name)
		case err != nil:
			add(false, "", "reading CustomResourceDefinition %s: %v", name, err)
			return out
		}
	}
	add(len(missing) == 0, installHint, "cert-manager CRDs installed and Established%s", missingList(missing))

	hooks := &admissionregistrationv1.ValidatingWebhookConfigurationList{}
	if err := c.List(ctx, hooks); err != nil {
		add(false, "", "listing ValidatingWebhookConfigurations: %v", err)
		return out
	}
	var svc *admissionregistrationv1.ServiceReference
	for _, h := range hooks.Items {
		for _, w := range h.Webhooks {
			if w.Name == certManagerWebhook {
				svc = w.ClientConfig.Service
			}
		}
	}
	switch {
	case svc == nil:
		add(false, installHint, "cert-manager's webhook (%s) is not registered", certManagerWebhook)
	default:
		ready, err := readyEndpoints(ctx, c, svc.Namespace, svc.Name)
		if err != nil {
			add(false, "", "listing the endpoints of Service %s/%s: %v", svc.Namespace, svc.Name, err)
			break
		}
		add(ready > 0, fmt.Sprintf("kubectl -n %s get pods; wait until cert-manager's webhook is Ready", svc.Namespace),
			"cert-manager's webhook Service %s/%s has %d ready endpoints", svc.Namespace, svc.Name, ready)
	}
	return out
}

func crdEstablished(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established {
			return c.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}

func missingList(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return " -- missing: " + strings.Join(names, ", ")
}

func readyEndpoints(ctx context.Context, c client.Client, ns, svc string) (int, error) {
	list := &discoveryv1.EndpointSliceList{}
	if err := c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: svc}); err != nil {
		return 0, err
	}
	ready := 0
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready++
			}
		}
	}
	return ready, nil
}

// access is one permission the install needs.
type access struct {
	group, resource, namespace, verb string
}

// checkPermissions asks the API server (SelfSubjectAccessReview) whether the user may
// create and patch (server-side apply) every kind the install applies, in its
// namespace.
func checkPermissions(ctx context.Context, kc *kubeClients, p *install.Plan) []checkResult {
	const section = "Permissions"
	var out []checkResult
	seen := map[access]bool{}
	var needed []access
	var unmapped []string
	for _, o := range p.All() {
		gvr, err := install.GVR(kc.client.RESTMapper(), o)
		if err != nil {
			unmapped = append(unmapped, o.GroupVersionKind().GroupKind().String())
			continue
		}
		for _, verb := range []string{"create", "patch"} {
			a := access{group: gvr.Group, resource: gvr.Resource, namespace: o.GetNamespace(), verb: verb}
			if !seen[a] {
				seen[a] = true
				needed = append(needed, a)
			}
		}
	}
	var denied []string
	for _, a := range needed {
		r := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Group: a.group, Resource: a.resource, Namespace: a.namespace, Verb: a.verb},
		}}
		res, err := kc.kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, r, metav1.CreateOptions{})
		if err != nil {
			out = append(out, checkResult{section: section, ok: false, message: fmt.Sprintf("asking whether you may %s %s: %v", a.verb, a.resource, err)})
			return out
		}
		if !res.Status.Allowed {
			what := a.resource
			if a.group != "" {
				what += "." + a.group
			}
			if a.namespace != "" {
				what += " in " + a.namespace
			}
			denied = append(denied, a.verb+" "+what)
		}
	}
	sort.Strings(denied)
	ok := len(denied) == 0
	msg := fmt.Sprintf("you may create and patch every kind the install applies (%d checks)", len(needed))
	if !ok {
		msg = fmt.Sprintf("%d of %d permissions the install needs are denied: %s", len(denied), len(needed), strings.Join(firstN(denied, 8), ", "))
	}
	out = append(out, checkResult{section: section, ok: ok, message: msg,
		hint: "install as a cluster administrator (cluster-admin): the install creates CRDs, ClusterRoles and webhook configurations"})
	if len(unmapped) > 0 {
		slices.Sort(unmapped)
		unmapped = slices.Compact(unmapped)
		out = append(out, checkResult{section: section, ok: false,
			message: "the API server does not serve kinds the install creates: " + strings.Join(unmapped, ", "),
			hint:    "these come from cert-manager: install it first"})
	}
	return out
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

// existingInstall describes a Weft control plane another tool installed ("" when there
// is none, or `weft install` installed it): applying over it would take its fields and
// leave that tool fighting weft over them.
func existingInstall(ctx context.Context, c client.Reader) string {
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: meshdefaults.ControlPlaneNamespace, Name: controllerDeployment}, d); err != nil {
		if apierrors.IsNotFound(err) {
			return ""
		}
		return fmt.Sprintf("cannot tell whether Weft is installed already: %v", err)
	}
	if install.ManagedBy(d, install.FieldManager) {
		return ""
	}
	if d.Labels["app.kubernetes.io/managed-by"] == "Helm" {
		return fmt.Sprintf("Weft is installed already by Helm (release %q)", d.Annotations["meta.helm.sh/release-name"])
	}
	var managers []string
	for _, mf := range d.ManagedFields {
		if !slices.Contains(managers, mf.Manager) {
			managers = append(managers, mf.Manager)
		}
	}
	return fmt.Sprintf("Weft is installed already by another tool (Deployment %s/%s, field managers %s)",
		meshdefaults.ControlPlaneNamespace, controllerDeployment, strings.Join(managers, ", "))
}

// checkGatewayAPIInstalled reports what the cluster has of the Gateway API CRDs. Before
// an install (pre) their absence is fine: weft install adds them.
func checkGatewayAPIInstalled(in *gatewayapi.Installed, pre bool) []checkResult {
	const section = "Gateway API"
	var out []checkResult
	add := func(ok bool, hint, format string, args ...any) {
		out = append(out, checkResult{section: section, ok: ok, message: fmt.Sprintf(format, args...), hint: hint})
	}
	const installHint = "weft install --gateway-api-only (or kubectl apply --server-side -k config/crd/gateway-api), weft-controller restarts by itself within a minute to serve routes"
	if in.Absent() {
		add(pre, installHint, "no Gateway API CRDs installed: HTTPRoutes and GRPCRoutes are not supported")
		return out
	}
	channel := string(in.Channel)
	if channel == "" {
		channel = "unknown"
	}
	switch {
	case in.Version == "":
		add(true, "", "Gateway API CRDs of an unknown version installed (no %s annotation)", gatewayapi.BundleVersionAnnotation)
	case gatewayapi.Compatible(in.Version):
		add(true, "", "Gateway API %s (%s channel) installed: compatible (Weft supports %s up to %s)", in.Version, channel, gatewayapi.MinVersion, gatewayapi.MaxVersion)
	default:
		add(false, "upgrade the Gateway API CRDs: weft install --gateway-api-only --gateway-api="+channelOrStandard(in.Channel),
			"Gateway API %s (%s channel) installed: not compatible (Weft supports %s up to %s)", in.Version, channel, gatewayapi.MinVersion, gatewayapi.MaxVersion)
	}
	for _, r := range []struct {
		kind   string
		served []string
	}{{"HTTPRoute", in.HTTPRouteServed}, {"GRPCRoute", in.GRPCRouteServed}} {
		switch {
		case r.served == nil:
			add(false, installHint, "%s is not installed", r.kind)
		case !slices.Contains(r.served, "v1"):
			add(false, "upgrade the Gateway API CRDs", "%s serves %s, not v1 (Weft watches v1)", r.kind, strings.Join(r.served, ", "))
		default:
			add(true, "", "%s serves %s", r.kind, strings.Join(r.served, ", "))
		}
	}
	return out
}

func channelOrStandard(c gatewayapi.Channel) string {
	if c == gatewayapi.Experimental {
		return string(c)
	}
	return string(gatewayapi.Standard)
}
