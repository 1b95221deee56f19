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

// The zero-trust tests (issue 16): authorization policy in the demo application, and
// mTLS that never falls back to plaintext: to a StatefulSet's pods by name, through a
// headless Service, pod to pod, and with the control plane stopped. This file sorts
// after suite_test.go on purpose: its last test stops the control plane.

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
)

// TestAuthorization: a Server on the demo's backend port and an AuthorizationPolicy
// that admits only web's ServiceAccount. web keeps calling backend; a meshed client of
// another ServiceAccount gets 403 on every request, each one counted by the backend
// proxies; the backends' readiness probes keep passing although nothing else may reach
// the port.
func TestAuthorization(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const server, authn, policy = "backend-http", "web-only", "backend-from-web"
	objs := []client.Object{
		&policyv1alpha1.Server{
			ObjectMeta: metav1.ObjectMeta{Name: server, Namespace: demoNS},
			Spec: policyv1alpha1.ServerSpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "backend"}},
				Port:        intstr.FromString("http"),
			},
		},
		&policyv1alpha1.MeshTLSAuthentication{
			ObjectMeta: metav1.ObjectMeta{Name: authn, Namespace: demoNS},
			Spec: policyv1alpha1.MeshTLSAuthenticationSpec{
				IdentityRefs: []policyv1alpha1.IdentityReference{{Kind: "ServiceAccount", Name: "web"}},
			},
		},
		&policyv1alpha1.AuthorizationPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: policy, Namespace: demoNS},
			Spec: policyv1alpha1.AuthorizationPolicySpec{
				TargetRef: policyv1alpha1.TargetReference{Group: policyv1alpha1.GroupVersion.Group, Kind: "Server", Name: server},
				RequiredAuthenticationRefs: []policyv1alpha1.AuthenticationReference{
					{Group: policyv1alpha1.GroupVersion.Group, Kind: "MeshTLSAuthentication", Name: authn},
				},
			},
		},
	}
	for _, o := range objs {
		if err := env.client.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() { _ = env.client.Delete(context.Background(), o) })
	}
	if err := eventually(ctx, time.Minute, time.Second, func() error {
		ap := &policyv1alpha1.AuthorizationPolicy{}
		if err := env.client.Get(ctx, client.ObjectKey{Namespace: demoNS, Name: policy}, ap); err != nil {
			return err
		}
		for _, c := range ap.Status.Conditions {
			if c.Type == "ResolvedRefs" && c.Status == metav1.ConditionTrue && c.ObservedGeneration == ap.Generation {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", ap.Status.Conditions)
	}); err != nil {
		t.Fatalf("the AuthorizationPolicy's references did not resolve: %v", err)
	}

	backendPods := func() []corev1.Pod {
		var out []corev1.Pod
		for _, p := range meshedPods(ctx, t, demoNS) {
			if p.Labels["app"] == "backend" {
				out = append(out, p)
			}
		}
		return out
	}
	denied := func() float64 {
		var n float64
		for _, p := range backendPods() {
			n += proxyCounter(ctx, t, demoNS, p.Name, "inbound_http_authz_deny_total", `srv_name="`+server+`"`)
		}
		return n
	}

	// The policy reaches the proxies within seconds; wait until an intruder is refused,
	// then measure a run of its own.
	intruder := func(name string, requests int) LoadStats {
		s, _ := runLoadJob(ctx, t, loadJob{name: name, meshed: true, args: []string{
			"--target=http://backend." + demoNS + ".svc.cluster.local:8080/intruder",
			"--rps=20", "--requests=" + strconv.Itoa(requests)}})
		return s
	}
	if err := eventually(ctx, 90*time.Second, time.Second, func() error {
		if s := intruder("authz-warmup", 5); s.ByStatus["403"] != 5 {
			return fmt.Errorf("an intruder's 5 requests were answered %v", s.ByStatus)
		}
		return nil
	}); err != nil {
		t.Fatalf("the policy never took effect: %v", err)
	}
	before := denied()
	s := intruder("authz-intruder", 40)
	if s.ByStatus["403"] != 40 {
		t.Errorf("a client running as weft-e2e/client reached backend: statuses %v, want 40 × 403", s.ByStatus)
	}
	if d := denied() - before; d < 40 {
		t.Errorf("the backend proxies counted %.0f denials of the 40 refused requests (inbound_http_authz_deny_total)", d)
	}

	// web, which the policy names, still reaches backend: through web's own answers,
	// and on the backend proxies' allow counter for the policy.
	allowed := func() float64 {
		var n float64
		for _, p := range backendPods() {
			n += proxyCounter(ctx, t, demoNS, p.Name, "inbound_http_authz_allow_total", `authz_name="`+policy+`"`)
		}
		return n
	}
	allowedBefore := allowed()
	web, _ := runLoadJob(ctx, t, loadJob{name: "authz-web", meshed: true, args: []string{
		"--target=http://web." + demoNS + ".svc.cluster.local:8080/books/1", "--rps=20", "--requests=40"}})
	if web.ByStatus["200"] < 36 || web.ByStatus["403"] != 0 {
		t.Errorf("web stopped reaching backend under the policy: statuses %v", web.ByStatus)
	}
	if a := allowed() - allowedBefore; a < 36 {
		t.Errorf("the backend proxies admitted %.0f requests by %s during web's 40", a, policy)
	}

	// The kubelet's probes of the backend port are admitted by the probe exemption, so
	// the pods stay Ready under a policy that admits only web.
	var probes float64
	for _, p := range backendPods() {
		if !podReady(&p) {
			t.Errorf("backend pod %s is not Ready under the policy", p.Name)
		}
		probes += proxyCounter(ctx, t, demoNS, p.Name, "inbound_http_authz_allow_total", `authz_name="probe"`)
	}
	if probes == 0 {
		t.Errorf("no backend proxy admitted a kubelet probe as authz_name=\"probe\"")
	}
	t.Logf("intruder: %v; web: %v; probes admitted: %.0f", s.ByStatus, web.ByStatus, probes)
}

// proxyCounter sums the samples of a counter in a pod proxy's /metrics whose labels
// contain match.
func proxyCounter(ctx context.Context, t *testing.T, namespace, pod, metric, match string) float64 {
	t.Helper()
	b, err := env.kube.CoreV1().Pods(namespace).ProxyGet("http", pod, "4191", "metrics", nil).DoRaw(ctx)
	if err != nil {
		t.Fatalf("reading %s/%s's proxy metrics: %v", namespace, pod, err)
	}
	var sum float64
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, metric+"{") || !strings.Contains(l, match) {
			continue
		}
		if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// TestMeshTLSWithoutFallback: calls that find no Service cluster IP are mTLS on the
// wire all the same: to a StatefulSet pod by its DNS name, through a headless Service,
// from one StatefulSet pod to another, and, with weft-controller scaled to zero, to a
// pod the client never talked to. The capture covers the server pods' addresses; a
// marker in each request's path shows up in the capture only if it went in plaintext.
func TestMeshTLSWithoutFallback(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var sts []corev1.Pod
	var echo *corev1.Pod
	for _, p := range meshedPods(ctx, t, ns) {
		switch {
		case p.Labels["app"] == "sts-echo":
			sts = append(sts, p)
		case p.Labels["app"] == "echo" && echo == nil:
			echo = &p
		}
	}
	if len(sts) != 2 || echo == nil {
		t.Fatalf("want the 2 sts-echo pods and an echo pod, got %d and %v", len(sts), echo != nil)
	}
	var ips []string
	for _, p := range append(sts, *echo) {
		ips = append(ips, "host "+p.Status.PodIP)
	}
	wire := func(t *testing.T, markers []string, run func()) {
		t.Helper()
		c, err := startCapture(ctx, "tcp and ("+strings.Join(ips, " or ")+")")
		if err != nil {
			t.Fatal(err)
		}
		run()
		var plaintext, toProxy int
		flows := map[string]int{}
		for _, pk := range c.stop(t) {
			if pk.length > 0 {
				flows[pk.src+" > "+pk.dst+":"+pk.dstPort]++
			}
			for _, m := range markers {
				if strings.Contains(pk.payload, m) {
					plaintext++
				}
			}
			if pk.dstPort == "4143" && pk.length > 0 {
				toProxy++
			}
		}
		t.Logf("packets with payload to a proxy's inbound port: %d; carrying a marker in plaintext: %d", toProxy, plaintext)
		if plaintext != 0 || toProxy == 0 {
			t.Logf("packets with payload by flow: %v", flows)
		}
		if plaintext != 0 {
			t.Errorf("%d packets carried a request in plaintext", plaintext)
		}
		if toProxy == 0 {
			t.Errorf("no packet reached a proxy's inbound port 4143: was the traffic meshed at all?")
		}
	}
	expectOK := func(t *testing.T, what string, s LoadStats, n int) {
		t.Helper()
		if s.ByStatus["200"] != uint64(n) {
			t.Errorf("%s: statuses %v, want %d × 200 (last error %q)", what, s.ByStatus, n, s.LastError)
		}
	}

	t.Run("statefulset pod names and headless service", func(t *testing.T) {
		wire(t, []string{"sts-by-name", "sts-headless"}, func() {
			byName, _ := runLoadJob(ctx, t, loadJob{name: "mtls-sts-name", meshed: true, args: []string{
				"--target=http://" + sts[0].Name + ".sts-echo." + ns + ".svc.cluster.local:8080/sts-by-name", "--rps=20", "--requests=20"}})
			expectOK(t, "by pod name", byName, 20)
			headless, _ := runLoadJob(ctx, t, loadJob{name: "mtls-sts-headless", meshed: true, args: []string{
				"--target=http://sts-echo." + ns + ".svc.cluster.local:8080/sts-headless", "--rps=20", "--requests=20"}})
			expectOK(t, "through the headless Service", headless, 20)
		})
	})
	t.Run("statefulset pod to pod", func(t *testing.T) {
		wire(t, []string{"sts-pod-to-pod"}, func() {
			s, err := execLoad(ctx, sts[0].Name, "http://"+sts[1].Name+".sts-echo."+ns+".svc.cluster.local:8080/sts-pod-to-pod", 20)
			if err != nil {
				t.Fatal(err)
			}
			expectOK(t, "pod to pod", s, 20)
		})
	})
	t.Run("control plane stopped", func(t *testing.T) {
		replicas := scaleController(ctx, t, 0)
		t.Cleanup(func() { scaleController(context.Background(), t, replicas) })
		// A destination the client never used: the proxy has nothing cached for it
		// and nobody to ask.
		target := "http://" + echo.Status.PodIP + ":8080/no-control-plane"
		wire(t, []string{"no-control-plane"}, func() {
			s, err := execLoad(ctx, sts[0].Name, target, 10)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s from %s with the control plane stopped: %+v", target, sts[0].Name, s)
			expectOK(t, "with the control plane stopped", s, 10)
		})
	})
}

// execLoad runs the demo's load generator inside a meshed pod's app container (so its
// connections go through that pod's proxy) and returns what it printed.
func execLoad(ctx context.Context, pod, target string, requests int) (LoadStats, error) {
	out, err := kubectl(ctx, "-n", ns, "exec", pod, "-c", "app", "--", "/weft-demo", "load", "--json", "--report=0",
		"--target="+target, "--rps=10", "--requests="+strconv.Itoa(requests))
	var s LoadStats
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &s); jerr != nil {
		return s, fmt.Errorf("load in %s: %v / %v\n%s", pod, err, jerr, out)
	}
	return s, nil
}

// scaleController scales weft-controller to n replicas, waits until that many run (or
// none is left), and returns the replicas it had.
func scaleController(ctx context.Context, t *testing.T, n int) int {
	t.Helper()
	out, err := kubectl(ctx, "-n", controlPlane, "get", "deploy/weft-controller", "-o", "jsonpath={.spec.replicas}")
	if err != nil {
		t.Fatalf("reading weft-controller's replicas: %v\n%s", err, out)
	}
	had, _ := strconv.Atoi(strings.TrimSpace(out))
	if out, err := kubectl(ctx, "-n", controlPlane, "scale", "deploy/weft-controller", "--replicas="+strconv.Itoa(n)); err != nil {
		t.Fatalf("scaling weft-controller: %v\n%s", err, out)
	}
	if n > 0 {
		if out, err := kubectl(ctx, "-n", controlPlane, "rollout", "status", "deploy/weft-controller", "--timeout=180s"); err != nil {
			t.Fatalf("weft-controller did not come back: %v\n%s", err, out)
		}
		return had
	}
	if err := eventually(ctx, 2*time.Minute, time.Second, func() error {
		if left := controllerPods(ctx, t); len(left) != 0 {
			return fmt.Errorf("%d weft-controller pods left", len(left))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return had
}
