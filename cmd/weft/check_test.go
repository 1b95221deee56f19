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
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/scheme"
	"github.com/weftmesh/weft/internal/testenv"
)

// TestCheck runs weft check against a real API server (envtest: no kubelet, so the
// statuses a cluster would write are written by the test) while the cluster's state goes
// from empty to healthy and back to broken, and checks what fails and the hints.
func TestCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	te, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := te.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = te.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	kc := &kubeClients{config: cfg, client: c, kube: kubernetes.NewForConfigOrDie(cfg)}
	ctx := context.Background()
	now := time.Now()
	opts := checkOptions{controlPlane: "weft-system", anchorMin: 7 * 24 * time.Hour, issuerMin: 12 * time.Hour}
	// must fails the whole test; it is only called outside subtests.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustIn := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// run returns the failed checks' messages and hints, one string each.
	run := func() []string {
		var failed []string
		for _, r := range check(ctx, kc, opts, now) {
			if !r.ok {
				failed = append(failed, r.message+" | hint: "+r.hint)
			}
		}
		return failed
	}
	expect := func(t *testing.T, want ...string) {
		t.Helper()
		failed := run()
		if len(failed) != len(want) {
			t.Fatalf("want %d failures, got %d:\n%s", len(want), len(failed), strings.Join(failed, "\n"))
		}
		for i, w := range want {
			if !strings.Contains(failed[i], w) {
				t.Errorf("failure %d: want it to contain %q, got %q", i, w, failed[i])
			}
		}
	}

	t.Run("nothing installed", func(t *testing.T) {
		expect(t, "Deployment weft-system/weft-controller not found | hint: install Weft",
			`Mesh "default" not found | hint: apply one`)
	})

	// Install the control plane's objects as config/default and a reconciled Mesh
	// would leave them.
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}}))
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "weft-controller"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "c"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "c"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "weft-controller:dev"}}}},
		},
	}
	must(c.Create(ctx, dep))
	dep.Status = appsv1.DeploymentStatus{Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}}}
	must(c.Status().Update(ctx, dep))
	for _, svc := range controlPlaneServices {
		must(c.Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "weft-system", Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}))
	}
	mesh := &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}}
	must(c.Create(ctx, mesh))
	setMesh := func(t *testing.T, anchorLeft, issuerLeft time.Duration, ready metav1.ConditionStatus) {
		t.Helper()
		mustIn(t, c.Get(ctx, client.ObjectKeyFromObject(mesh), mesh))
		mesh.Status = meshv1alpha1.MeshStatus{
			Conditions: []metav1.Condition{{Type: meshv1alpha1.ConditionReady, Status: ready, Reason: "Test", Message: "set by the test", LastTransitionTime: metav1.Now()}},
			TrustAnchor: &meshv1alpha1.CertificateStatus{NotAfter: ptr.To(metav1.NewTime(now.Add(anchorLeft))),
				RenewalTime: ptr.To(metav1.NewTime(now.Add(anchorLeft - 1440*time.Hour)))},
			Issuer: &meshv1alpha1.CertificateStatus{NotAfter: ptr.To(metav1.NewTime(now.Add(issuerLeft))),
				RenewalTime: ptr.To(metav1.NewTime(now.Add(issuerLeft - 25*time.Hour)))},
		}
		mustIn(t, c.Status().Update(ctx, mesh))
	}
	setMesh(t, 8000*time.Hour, 40*time.Hour, metav1.ConditionTrue)
	for _, name := range []string{trustAnchorCert, issuerCert} {
		cert := &cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: name},
			Spec: cmv1.CertificateSpec{SecretName: name, CommonName: name, IssuerRef: cmmeta.IssuerReference{Name: "x"}}}
		must(c.Create(ctx, cert))
		cert.Status.Conditions = []cmv1.CertificateCondition{{Type: cmv1.CertificateConditionReady, Status: cmmeta.ConditionTrue, Reason: "Ready"}}
		must(c.Status().Update(ctx, cert))
	}

	// The tap API: missing, then as config/tap registers it, which the API server's own
	// aggregator finds unavailable here (envtest has no weft-tap Service), then a local
	// APIService, which the aggregator marks Available.
	t.Run("tap API missing", func(t *testing.T) {
		expect(t, "APIService v1alpha1.tap.weft.dev not found: weft tap and the dashboard")
	})
	tapAPI := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1alpha1.tap.weft.dev"},
		"spec": map[string]any{"group": "tap.weft.dev", "version": "v1alpha1", "groupPriorityMinimum": int64(1000), "versionPriority": int64(100),
			"insecureSkipTLSVerify": true, "service": map[string]any{"name": "weft-tap", "namespace": "weft-system", "port": int64(443)}},
	}}
	must(c.Create(ctx, tapAPI))
	t.Run("tap API unavailable", func(t *testing.T) {
		var failed []string
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if failed = run(); len(failed) == 1 && strings.Contains(failed[0], "is not Available: ServiceNotFound") {
				break
			}
		}
		if len(failed) != 1 || !strings.Contains(failed[0], "APIService v1alpha1.tap.weft.dev is not Available: ServiceNotFound") ||
			!strings.Contains(failed[0], "kubectl describe apiservice v1alpha1.tap.weft.dev") {
			t.Fatalf("want the aggregator's ServiceNotFound with a hint, got:\n%s", strings.Join(failed, "\n"))
		}
	})
	must(c.Get(ctx, client.ObjectKeyFromObject(tapAPI), tapAPI))
	unstructured.RemoveNestedField(tapAPI.Object, "spec", "service")
	unstructured.RemoveNestedField(tapAPI.Object, "spec", "insecureSkipTLSVerify")
	must(c.Update(ctx, tapAPI))
	for end := time.Now().Add(20 * time.Second); len(run()) > 0 && time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
	}

	t.Run("healthy control plane, no meshed namespace", func(t *testing.T) { expect(t) })

	// A meshed namespace with one injected ready pod, one injected pod whose proxy is
	// not ready, one pod created before injection, one opted out, and a finished Job pod.
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Annotations: map[string]string{inject.AnnotationInject: inject.InjectEnabled}}}))
	pod := func(name string, injected, ready bool, phase corev1.PodPhase, ann map[string]string) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: ann},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		if injected {
			p.Spec.InitContainers = []corev1.Container{{Name: inject.ProxyContainerName, Image: "weft-proxy:dev",
				RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
		}
		must(c.Create(ctx, p))
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		p.Status = corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}}
		if injected && !ready {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: inject.ProxyContainerName,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
		}
		must(c.Status().Update(ctx, p))
	}
	pod("web-1", true, true, corev1.PodRunning, nil)
	pod("job-1", false, false, corev1.PodSucceeded, nil)
	pod("legacy", false, true, corev1.PodRunning, map[string]string{inject.AnnotationInject: inject.InjectDisabled})

	t.Run("meshed namespace without trust roots", func(t *testing.T) {
		expect(t, "namespace shop has the trust roots ConfigMap weft-trust-roots | hint: the Mesh reconciler publishes it")
	})
	must(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: inject.TrustRootsConfigMap},
		Data: map[string]string{inject.TrustRootsKey: "-----BEGIN CERTIFICATE-----\n"}}))
	t.Run("healthy meshed namespace", func(t *testing.T) { expect(t) })

	pod("old", false, true, corev1.PodRunning, nil)
	pod("web-2", true, false, corev1.PodRunning, nil)
	t.Run("uninjected and unready pods", func(t *testing.T) {
		expect(t, "namespace shop: 2 of 3 pods have the proxy: old | hint: these pods started before injection",
			"namespace shop: 1 of 2 meshed pods are ready: web-2 (weft-proxy: CrashLoopBackOff)")
	})
	must(c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "old"}}, client.GracePeriodSeconds(0)))
	must(c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-2"}}, client.GracePeriodSeconds(0)))

	// Policy objects as weft-controller's status leaves them (no controller runs here:
	// the test writes the status), and meshed pods with HTTP probes.
	srv := &policyv1alpha1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "books-http"},
		Spec: policyv1alpha1.ServerSpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "books"}}, Port: intstr.FromInt32(8080)}}
	must(c.Create(ctx, srv))
	t.Run("policy not reconciled", func(t *testing.T) {
		expect(t, "Server shop/books-http has no status for its generation 1 yet | hint: weft-controller writes it")
	})
	setStatus := func(t *testing.T, obj client.Object, st *policyv1alpha1.PolicyStatus, conds ...metav1.Condition) {
		t.Helper()
		for i := range conds {
			conds[i].ObservedGeneration, conds[i].LastTransitionTime = 1, metav1.Now()
		}
		st.ObservedGeneration, st.Conditions = 1, conds
		mustIn(t, c.Status().Update(ctx, obj))
	}
	cond := func(typ string, ok bool, reason, msg string) metav1.Condition {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg}
	}
	t.Run("Server selects no pod", func(t *testing.T) {
		setStatus(t, srv, &srv.Status, cond("Accepted", true, "Accepted", "ok"),
			cond("ResolvedRefs", true, "NoPodsSelected", "The podSelector matches no pod in namespace shop yet"), cond("Ready", true, "Ready", "Ready"))
		expect(t, "Server shop/books-http selects no pod: The podSelector matches no pod in namespace shop yet | hint: fine while its workload is scaled to zero")
	})
	ap := &policyv1alpha1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "books-from-web"},
		Spec: policyv1alpha1.AuthorizationPolicySpec{TargetRef: policyv1alpha1.TargetReference{Group: "policy.weft.dev", Kind: "Server", Name: "books-http"},
			RequiredAuthenticationRefs: []policyv1alpha1.AuthenticationReference{{Group: "policy.weft.dev", Kind: "MeshTLSAuthentication", Name: "web"}}}}
	must(c.Create(ctx, ap))
	t.Run("policy names a missing authentication", func(t *testing.T) {
		setStatus(t, srv, &srv.Status, cond("Accepted", true, "Accepted", "ok"), cond("ResolvedRefs", true, "Resolved", "selects 1 pod"), cond("Ready", true, "Ready", "Ready"))
		const missing = "MeshTLSAuthentication shop/web not found; create it or fix the reference; the policy authorizes nothing until it does"
		setStatus(t, ap, &ap.Status, cond("Accepted", true, "Accepted", "ok"), cond("ResolvedRefs", false, "RefNotFound", missing), cond("Ready", false, "RefNotFound", missing))
		expect(t, "AuthorizationPolicy shop/books-from-web: ResolvedRefs=False (RefNotFound): "+missing+" | hint: kubectl describe authorizationpolicy -n shop books-from-web")
	})
	setStatus(t, ap, &ap.Status, cond("Accepted", true, "Accepted", "ok"), cond("ResolvedRefs", true, "Resolved", "ok"), cond("Ready", true, "Ready", "Ready"))

	probedPod := func(name string, env []corev1.EnvVar) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: inject.ProxyContainerName, Image: "weft-proxy:dev", Env: env,
					RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
					// The proxy's own probe is not the app's: never listed, never missed.
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(4191)}}}}},
				Containers: []corev1.Container{{Name: "app", Image: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}}}}}}
		must(c.Create(ctx, p))
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		must(c.Status().Update(ctx, p))
	}
	probedPod("books-new", []corev1.EnvVar{{Name: "WEFT_INBOUND_PROBE_PATHS", Value: "8080:/healthz"}})
	t.Run("probes exempt", func(t *testing.T) {
		expect(t)
		var buf bytes.Buffer
		printCheck(&buf, check(ctx, kc, opts, now))
		for _, want := range []string{"Authorization policy\n", "[ok]   2 of 2 policy objects are accepted, resolved and select pods (1 AuthorizationPolicy, 1 Server)",
			"[ok]   namespace shop: the inbound policy exempts the HTTP probes of 1 of 1 probed meshed pods"} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, buf.String())
			}
		}
	})
	probedPod("books-old", nil)
	t.Run("pod injected before probe exemption", func(t *testing.T) {
		// The compiled policy still exempts its probes; only the bootstrap lacks them.
		expect(t, "namespace shop: the proxies of 1 pods do not know their probes before the control plane's policy arrives (start-up, outages): books-old | hint: these pods were injected by an older weft")
	})
	for _, name := range []string{"books-new", "books-old"} {
		must(c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}, client.GracePeriodSeconds(0)))
	}

	t.Run("issuer near expiry and renewal overdue", func(t *testing.T) {
		setMesh(t, 8000*time.Hour, 2*time.Hour, metav1.ConditionTrue)
		expect(t, "the identity issuer expires in 2h0m0s", "the identity issuer's renewal is overdue")
	})
	t.Run("expired anchor, Mesh not ready", func(t *testing.T) {
		setMesh(t, -time.Minute, 40*time.Hour, metav1.ConditionFalse)
		expect(t, `Mesh "default" is not Ready: Ready=False (Test: set by the test)`, "the trust anchor EXPIRED", "the trust anchor's renewal is overdue")
	})
	t.Run("controller unavailable and no endpoints", func(t *testing.T) {
		setMesh(t, 8000*time.Hour, 40*time.Hour, metav1.ConditionTrue)
		dep.Status.Conditions[0].Status = corev1.ConditionFalse
		dep.Status.ReadyReplicas, dep.Status.AvailableReplicas = 0, 0
		mustIn(t, c.Status().Update(ctx, dep))
		mustIn(t, c.Delete(ctx, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "weft-identity-x"}}))
		expect(t, "Deployment weft-controller is not Available (0/2 replicas ready) | hint: kubectl -n weft-system describe deploy/weft-controller",
			"Service weft-identity has 0 ready endpoints")
	})

	// The printed report marks failures and carries their hints.
	var buf bytes.Buffer
	printCheck(&buf, check(ctx, kc, opts, now))
	for _, want := range []string{"Control plane\n", "[FAIL] Service weft-identity has 0 ready endpoints", "hint: the Service selects", "[ok]   Service weft-webhook has 1 ready endpoints"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}
