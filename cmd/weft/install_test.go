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
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/gatewayapi"
	"github.com/weftmesh/weft/internal/install"
	"github.com/weftmesh/weft/internal/scheme"
	"github.com/weftmesh/weft/internal/testenv"
)

// TestInstallDryRunOffline: --dry-run --gateway-api=none needs no cluster (a render for
// GitOps or review) and prints the embedded config/default.
func TestInstallDryRunOffline(t *testing.T) {
	code, out, errOut := weft(t, "", "install", "--dry-run", "--gateway-api=none", "--kubeconfig", filepath.Join(t.TempDir(), "missing"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	objs := decodeYAML(t, out)
	want, err := install.WeftObjects()
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(want) || len(objs) < 30 {
		t.Errorf("rendered %d objects, the embedded install has %d", len(objs), len(want))
	}
	// Without none, the Gateway API decision needs the cluster.
	if code, _, errOut := weft(t, "", "install", "--dry-run", "--kubeconfig", filepath.Join(t.TempDir(), "missing")); code != 1 || !strings.Contains(errOut, "kubeconfig") {
		t.Errorf("--dry-run without a cluster: exit %d: %s", code, errOut)
	}
}

// installEnv starts an API server with cert-manager's CRDs only (withCertManager), or
// none: neither Weft's nor the Gateway API's, which weft install brings.
func installEnv(t *testing.T, withCertManager bool) (*envtest.Environment, *rest.Config) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an API server")
	}
	te, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	te.CRDDirectoryPaths = nil
	if withCertManager {
		te.CRDDirectoryPaths = []string{filepath.Join(root, "config", "cert-manager", "crds")}
	}
	cfg, err := te.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = te.Stop() })
	return te, cfg
}

func clientsFor(t *testing.T, cfg *rest.Config) *kubeClients {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &kubeClients{config: cfg, client: c, kube: kubernetes.NewForConfigOrDie(cfg)}
}

// writeKubeconfig writes an admin kubeconfig for the CLI's --kubeconfig.
func writeKubeconfig(t *testing.T, te *envtest.Environment, name string, groups ...string) string {
	t.Helper()
	u, err := te.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// key names an object for comparisons.
func key(o *unstructured.Unstructured) string {
	return o.GroupVersionKind().GroupKind().String() + " " + o.GetNamespace() + "/" + o.GetName()
}

// normalized maps objects by key to their JSON form, so that a YAML render and a
// kustomize render compare by content, not by formatting.
func normalized(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, o := range objs {
		b, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		out[key(o)] = v
	}
	return out
}

func decodeYAML(t *testing.T, s string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := install.Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func gatewayCRDNames(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" && strings.HasSuffix(o.GetName(), "."+gatewayapi.Group) {
			out = append(out, o.GetName()+" "+o.GetAnnotations()[gatewayapi.ChannelAnnotation])
		}
	}
	slices.Sort(out)
	return out
}

// TestInstall drives weft check --pre, weft install and weft uninstall through the CLI
// against a real API server that starts with cert-manager's CRDs only.
func TestInstall(t *testing.T) {
	te, cfg := installEnv(t, true)
	kc := clientsFor(t, cfg)
	c := kc.client
	ctx := context.Background()
	admin := writeKubeconfig(t, te, "installer", "system:masters")
	cli := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		return weft(t, "", append(args, "--kubeconfig", admin)...)
	}
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	t.Run("check --pre fails without cert-manager's webhook", func(t *testing.T) {
		code, out, _ := cli(t, "check", "--pre")
		if code != 1 || !strings.Contains(out, "[FAIL] cert-manager's webhook (webhook.cert-manager.io) is not registered") {
			t.Fatalf("exit %d, want 1 naming the missing webhook:\n%s", code, out)
		}
		for _, ok := range []string{"[ok]   cert-manager CRDs installed and Established", "[ok]   you may create and patch every kind",
			"[ok]   no Weft installed by another tool", "[ok]   no Gateway API CRDs installed", "Gateway API CRDs absent: installing v1.6.3 (standard channel)"} {
			if !strings.Contains(out, ok) {
				t.Errorf("output lacks %q:\n%s", ok, out)
			}
		}
	})

	t.Run("weft check fails without the Gateway API CRDs", func(t *testing.T) {
		in, err := gatewayapi.Inspect(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		got := resultLines(checkGatewayAPIInstalled(in, false))
		if want := []string{"FAIL no Gateway API CRDs installed: HTTPRoutes and GRPCRoutes are not supported"}; !reflect.DeepEqual(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
		code, out, _ := cli(t, "check")
		if code != 1 || !strings.Contains(out, "[FAIL] no Gateway API CRDs installed") {
			t.Errorf("weft check: exit %d:\n%s", code, out)
		}
	})

	// cert-manager's webhook as its install registers it, with a ready endpoint.
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cert-manager"}}))
	must(t, c.Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "cert-manager-webhook"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    certManagerWebhook,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "cert-manager", Name: "cert-manager-webhook"}},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			// Matches nothing the test creates: envtest has no webhook server.
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{"example.invalid"}, APIVersions: []string{"v1"}, Resources: []string{"nothing"}}}},
		}},
	}))
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "cert-manager", Name: "cert-manager-webhook-x", Labels: map[string]string{discoveryv1.LabelServiceName: "cert-manager-webhook"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}}},
	}
	must(t, c.Create(ctx, slice))
	t.Run("check --pre fails while cert-manager's webhook is not ready", func(t *testing.T) {
		code, out, _ := cli(t, "check", "--pre")
		if code != 1 || !strings.Contains(out, "[FAIL] cert-manager's webhook Service cert-manager/cert-manager-webhook has 0 ready endpoints") {
			t.Fatalf("exit %d, want 1 naming the unready webhook:\n%s", code, out)
		}
	})
	slice.Endpoints[0].Conditions.Ready = ptr.To(true)
	must(t, c.Update(ctx, slice))

	t.Run("check --pre passes", func(t *testing.T) {
		code, out, _ := cli(t, "check", "--pre")
		if code != 0 {
			t.Fatalf("exit %d, want 0:\n%s", code, out)
		}
	})

	t.Run("check --pre names the permissions a user lacks", func(t *testing.T) {
		nobody := writeKubeconfig(t, te, "nobody")
		code, out, _ := weft(t, "", "check", "--pre", "--kubeconfig", nobody)
		if code != 1 || !regexp.MustCompile(`\[FAIL\] (\d+) of (\d+) permissions the install needs are denied: .*create clusterroles.rbac.authorization.k8s.io, create customresourcedefinitions`).MatchString(out) {
			t.Fatalf("exit %d, want 1 listing denied permissions:\n%s", code, out)
		}
	})

	t.Run("dry-run with --gateway-api=none renders config/default", func(t *testing.T) {
		crdsBefore, err := countCRDs(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		code, out, errOut := cli(t, "install", "--dry-run", "--gateway-api=none")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		want, err := testenv.Kustomize("config/default")
		if err != nil {
			t.Fatal(err)
		}
		got := decodeYAML(t, out)
		if len(got) != len(want) || len(want) < 30 {
			t.Errorf("rendered %d objects, kustomize %d", len(got), len(want))
		}
		g, w := normalized(t, got), normalized(t, want)
		for k := range w {
			if !reflect.DeepEqual(g[k], w[k]) {
				t.Errorf("%s differs from kustomize build config/default (or is missing)", k)
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				t.Errorf("%s is rendered but not in config/default", k)
			}
		}
		// CRDs come first, and webhook configurations last.
		if got[0].GetKind() != "CustomResourceDefinition" || !strings.HasSuffix(got[len(got)-1].GetKind(), "WebhookConfiguration") {
			t.Errorf("order: first %s, last %s", got[0].GetKind(), got[len(got)-1].GetKind())
		}
		if n, err := countCRDs(ctx, c); err != nil || n != crdsBefore {
			t.Errorf("a dry run created CRDs (%d, was %d, %v)", n, crdsBefore, err)
		}
	})

	t.Run("dry-run on a cluster without the Gateway API adds the standard channel", func(t *testing.T) {
		code, out, errOut := cli(t, "install", "--dry-run")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		objs := decodeYAML(t, out)
		gw := gatewayCRDNames(objs)
		if len(gw) != 10 || !strings.HasSuffix(gw[0], " standard") {
			t.Errorf("Gateway API CRDs rendered: %v, want the 10 of the standard channel", gw)
		}
		// Verbatim: what kustomize renders of config/crd/gateway-api.
		want, err := testenv.Kustomize("config/crd/gateway-api")
		if err != nil {
			t.Fatal(err)
		}
		g, w := normalized(t, objs), normalized(t, want)
		for k := range w {
			if !reflect.DeepEqual(g[k], w[k]) {
				t.Errorf("%s differs from kustomize build config/crd/gateway-api (or is missing)", k)
			}
		}
		if !strings.Contains(errOut, "Gateway API CRDs absent: installing") {
			t.Errorf("stderr does not say why: %s", errOut)
		}
	})

	var firstApply string
	t.Run("install creates every object", func(t *testing.T) {
		code, out, errOut := cli(t, "install")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		firstApply = out
		p, err := install.NewPlan(&gatewayapi.Installed{}, gatewayapi.Auto)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.All() {
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(o.GroupVersionKind())
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
				t.Errorf("%s: %v", key(o), err)
				continue
			}
			if !install.ManagedBy(live, install.FieldManager) {
				t.Errorf("%s is not managed by %q", key(o), install.FieldManager)
			}
		}
		if !regexp.MustCompile(`applied (\d+) objects: (\d+) created, 0 configured, 0 unchanged`).MatchString(out) {
			t.Errorf("first install output: %s", out)
		}
	})
	t.Logf("first install: %s", firstApply)

	t.Run("a second install changes nothing", func(t *testing.T) {
		before := resourceVersions(t, c)
		code, out, errOut := cli(t, "install")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		if !regexp.MustCompile(`applied (\d+) objects: 0 created, 0 configured, (\d+) unchanged`).MatchString(out) ||
			!strings.Contains(out, "v1.6.3 (standard channel) installed, the same as Weft's v1.6.3: left as it is") {
			t.Errorf("second install output: %s", out)
		}
		if after := resourceVersions(t, c); !reflect.DeepEqual(before, after) {
			t.Errorf("a second install changed objects")
		}
	})

	t.Run("weft check reports the standard channel", func(t *testing.T) {
		in, err := gatewayapi.Inspect(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		got := resultLines(checkGatewayAPIInstalled(in, false))
		want := []string{
			"ok Gateway API v1.6.3 (standard channel) installed: compatible (Weft supports v1.2.0 up to v2.0.0)",
			"ok HTTPRoute serves v1, v1beta1",
			"ok GRPCRoute serves v1",
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %q\nwant %q", got, want)
		}
	})

	t.Run("experimental channel on request, never back to standard", func(t *testing.T) {
		code, out, errOut := cli(t, "install", "--gateway-api-only", "--gateway-api=experimental")
		if code != 0 || !strings.Contains(out, "moving it to the experimental channel") {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		in, err := gatewayapi.Inspect(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if got := resultLines(checkGatewayAPIInstalled(in, false)); got[0] != "ok Gateway API v1.6.3 (experimental channel) installed: compatible (Weft supports v1.2.0 up to v2.0.0)" {
			t.Errorf("check: %q", got)
		}
		if !slices.Contains(in.HTTPRouteServed, "v1") {
			t.Errorf("HTTPRoute serves %v", in.HTTPRouteServed)
		}
		before := resourceVersions(t, c)
		code, out, _ = cli(t, "install", "--gateway-api-only", "--gateway-api=standard")
		if code != 0 || !strings.Contains(out, "(experimental channel) installed, the same as Weft's v1.6.3: left as it is") {
			t.Errorf("exit %d: %s", code, out)
		}
		if after := resourceVersions(t, c); !reflect.DeepEqual(before, after) {
			t.Errorf("asking for the standard channel over the experimental one changed objects")
		}
	})

	t.Run("a newer Gateway API is left alone", func(t *testing.T) {
		// Another tool upgraded the routes (its own field manager).
		for _, name := range []string{gatewayapi.HTTPRouteCRD, gatewayapi.GRPCRouteCRD} {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			must(t, c.Get(ctx, client.ObjectKey{Name: name}, crd))
			crd.Annotations[gatewayapi.BundleVersionAnnotation] = "v1.9.0"
			must(t, c.Update(ctx, crd, client.FieldOwner("gateway-controller")))
		}
		before := resourceVersions(t, c)
		for _, mode := range []string{"auto", "standard", "experimental"} {
			code, out, _ := cli(t, "install", "--gateway-api="+mode)
			if code != 0 || !strings.Contains(out, "Gateway API v1.9.0 (experimental channel) installed, newer than Weft's v1.6.3: left as it is") {
				t.Errorf("--gateway-api=%s: exit %d: %s", mode, code, out)
			}
		}
		if after := resourceVersions(t, c); !reflect.DeepEqual(before, after) {
			t.Errorf("an install over a newer Gateway API changed objects")
		}
	})

	t.Run("uninstall refuses while pods are meshed", func(t *testing.T) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "app"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}, {Name: "weft-proxy", Image: "weft-proxy"}}}}
		must(t, c.Create(ctx, pod))
		code, _, errOut := cli(t, "uninstall")
		if code != 1 || !strings.Contains(errOut, "refusing to uninstall while the mesh is in use: 1 meshed pods in namespace default") {
			t.Errorf("exit %d: %s", code, errOut)
		}
		must(t, c.Delete(ctx, pod, client.GracePeriodSeconds(0)))
		mesh := &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}}
		must(t, c.Create(ctx, mesh))
		code, _, errOut = cli(t, "uninstall")
		if code != 1 || !strings.Contains(errOut, "Mesh default (kubectl delete mesh default)") {
			t.Errorf("exit %d: %s", code, errOut)
		}
		must(t, c.Delete(ctx, mesh))
	})

	t.Run("uninstall --dry-run deletes nothing", func(t *testing.T) {
		before := resourceVersions(t, c)
		code, out, errOut := cli(t, "uninstall", "--dry-run")
		if code != 0 || !strings.Contains(out, "would delete Deployment weft-system/weft-controller") {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		if after := resourceVersions(t, c); !reflect.DeepEqual(before, after) {
			t.Errorf("a dry run changed objects")
		}
	})

	t.Run("uninstall removes Weft, keeps the Gateway API and CRDs with objects", func(t *testing.T) {
		// A user object: its CRD stays.
		must(t, c.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "policy.weft.dev/v1alpha1", "kind": "MeshTLSAuthentication",
			"metadata": map[string]any{"namespace": "default", "name": "users"},
			"spec":     map[string]any{"identities": []any{"*"}},
		}}))
		code, out, errOut := cli(t, "uninstall")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		if !strings.Contains(out, "kept CustomResourceDefinition meshtlsauthentications.policy.weft.dev: 1 MeshTLSAuthentication objects remain") {
			t.Errorf("output: %s", out)
		}
		p, err := install.NewPlan(nil, gatewayapi.None)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.All() {
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(o.GroupVersionKind())
			err := c.Get(ctx, client.ObjectKeyFromObject(o), live)
			switch {
			case o.GetName() == "meshtlsauthentications.policy.weft.dev":
				if err != nil || live.GetDeletionTimestamp() != nil {
					t.Errorf("%s was deleted with a user object in it (%v)", key(o), err)
				}
			case apierrors.IsNotFound(err):
			case err != nil:
				t.Errorf("%s: %v", key(o), err)
			case live.GetDeletionTimestamp() == nil:
				t.Errorf("%s is still there", key(o))
			}
		}
		in, err := gatewayapi.Inspect(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(in.CRDs) != 10 {
			t.Errorf("%d Gateway API CRDs left, want 10", len(in.CRDs))
		}
	})

	t.Run("uninstall --gateway-api --force removes what weft installed", func(t *testing.T) {
		// A Gateway API CRD weft did not install stays.
		foreign := &apiextensionsv1.CustomResourceDefinition{}
		must(t, c.Get(ctx, client.ObjectKey{Name: "tcproutes." + gatewayapi.Group}, foreign))
		foreign.ManagedFields = []metav1.ManagedFieldsEntry{{}} // drops every manager's record, weft's too
		must(t, c.Update(ctx, foreign, client.FieldOwner("another-tool")))
		must(t, c.Get(ctx, client.ObjectKeyFromObject(foreign), foreign))
		if install.ManagedBy(foreign, install.FieldManager) {
			t.Fatalf("could not make %s foreign: managers %v", foreign.Name, foreign.ManagedFields)
		}
		code, out, errOut := cli(t, "uninstall", "--gateway-api", "--force")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		if !strings.Contains(out, "kept CustomResourceDefinition tcproutes.gateway.networking.k8s.io: weft install did not install it") ||
			!strings.Contains(out, "deleted CustomResourceDefinition meshtlsauthentications.policy.weft.dev") ||
			!strings.Contains(out, "deleted CustomResourceDefinition httproutes.gateway.networking.k8s.io") {
			t.Errorf("output: %s", out)
		}
	})

	t.Run("a Weft installed by Helm clashes", func(t *testing.T) {
		ns := &corev1.Namespace{}
		must(t, c.Get(ctx, client.ObjectKey{Name: "weft-system"}, ns))
		// envtest has no namespace controller: finish the deletion by hand.
		if ns.DeletionTimestamp != nil {
			ns.Spec.Finalizers = nil
			if _, err := kc.kube.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			waitGone(t, c, ns)
			must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}}))
		}
		must(t, c.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "weft-controller",
				Labels:      map[string]string{"app.kubernetes.io/managed-by": "Helm"},
				Annotations: map[string]string{"meta.helm.sh/release-name": "weft"}},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "c"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "c"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "weft-controller:dev"}}}},
			},
		}))
		code, out, _ := cli(t, "check", "--pre")
		if code != 1 || !strings.Contains(out, `[FAIL] Weft is installed already by Helm (release "weft")`) {
			t.Errorf("check --pre: exit %d: %s", code, out)
		}
		code, _, errOut := cli(t, "install")
		if code != 1 || !strings.Contains(errOut, `Weft is installed already by Helm (release "weft"); upgrade it the way it was installed, or pass --force`) {
			t.Errorf("install: exit %d: %s", code, errOut)
		}
	})
	t.Run("weft authz reads a namespace without the Gateway API routes", func(t *testing.T) {
		// Weft's CRDs without the routes' (tcproutes is left, so the group is served).
		// The Helm Deployment's selector differs, and a selector is immutable.
		must(t, c.Delete(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "weft-controller"}}))
		code, out, errOut := cli(t, "install", "--gateway-api=none")
		if code != 0 {
			t.Fatalf("install: exit %d: %s%s", code, out, errOut)
		}
		if _, err := gatewayapi.Inspect(ctx, c); err != nil {
			t.Fatal(err)
		}
		in, err := gatherAuthzInput(ctx, c, "default")
		if err != nil || len(in.HTTPRoutes)+len(in.GRPCRoutes) != 0 {
			t.Fatalf("gatherAuthzInput without the route CRDs: %v (%d routes)", err, len(in.HTTPRoutes)+len(in.GRPCRoutes))
		}
	})
}

func countCRDs(ctx context.Context, c client.Client) (int, error) {
	list := &apiextensionsv1.CustomResourceDefinitionList{}
	if err := c.List(ctx, list); err != nil {
		return 0, err
	}
	return len(list.Items), nil
}

// resourceVersions records the resourceVersion of every object weft install manages,
// and of every CRD.
func resourceVersions(t *testing.T, c client.Client) map[string]string {
	t.Helper()
	out := map[string]string{}
	p, err := install.NewPlan(&gatewayapi.Installed{}, gatewayapi.ModeExperimental)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range p.All() {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(o), live); err == nil {
			out[key(o)] = live.GetResourceVersion()
		}
	}
	return out
}

func resultLines(rs []checkResult) []string {
	var out []string
	for _, r := range rs {
		mark := "ok"
		if !r.ok {
			mark = "FAIL"
		}
		out = append(out, mark+" "+r.message)
	}
	return out
}

func waitGone(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s is still there", client.ObjectKeyFromObject(obj))
}

// TestInstallWithoutCertManager: without cert-manager, check --pre says so (its CRDs,
// its webhook, the kinds the install creates), and install stops at the first
// cert-manager object with the same advice instead of an opaque mapping error.
func TestInstallWithoutCertManager(t *testing.T) {
	te, _ := installEnv(t, false)
	admin := writeKubeconfig(t, te, "installer", "system:masters")
	code, out, _ := weft(t, "", "check", "--pre", "--kubeconfig", admin)
	for _, want := range []string{
		"[FAIL] cert-manager CRDs installed and Established -- missing: certificates.cert-manager.io",
		"[FAIL] cert-manager's webhook (webhook.cert-manager.io) is not registered",
		"[FAIL] the API server does not serve kinds the install creates: Certificate.cert-manager.io, Issuer.cert-manager.io",
	} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("check --pre: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	code, _, errOut := weft(t, "", "install", "--gateway-api=none", "--kubeconfig", admin)
	if code != 1 || !strings.Contains(errOut, "is cert-manager installed? (weft check --pre)") {
		t.Errorf("install: exit %d: %s", code, errOut)
	}
}
