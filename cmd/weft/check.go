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
	"io"
	"sort"
	"strings"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/gatewayapi"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/tap"
)

// The control plane's objects, as config/default and the Mesh reconciler name them
// (docs: the contracts between the parts).
const (
	controllerDeployment = "weft-controller"
	trustAnchorCert      = "weft-trust-anchor"
	issuerCert           = "weft-identity-issuer"
)

var controlPlaneServices = []string{meshdefaults.IdentityServiceName, meshdefaults.DestinationServiceName, "weft-webhook"}

// checkResult is the outcome of one check.
type checkResult struct {
	section string
	ok      bool
	message string
	hint    string // what to do about a failure
}

type checkOptions struct {
	controlPlane string
	anchorMin    time.Duration
	issuerMin    time.Duration
}

func newCheckCommand(c *cli) *cobra.Command {
	var o checkOptions
	var (
		wait time.Duration
		pre  bool
		gw   string
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "check that the control plane, certificates and meshed pods are healthy",
		Long: "Checks that Weft is healthy: the control plane is available, its Services have endpoints and\n" +
			"the API server finds the tap API available,\n" +
			"the Mesh is Ready, the trust anchor and identity issuer are valid and not near expiry, every\n" +
			"pod in a meshed namespace is injected and ready, every Server and AuthorizationPolicy is\n" +
			"accepted, resolved and selects pods, and the meshed pods' HTTP probes are exempt from the\n" +
			"inbound policy, and that the Gateway API CRDs are installed and compatible. Each failure comes\n" +
			"with a hint. Exits 1 when a check fails.\n\n" +
			"With --pre, checks instead that the cluster is ready for 'weft install'.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			mode, err := gatewayapi.ParseMode(gw)
			if err != nil {
				return exitError{code: 2, err: err}
			}
			kc, err := c.clients()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			return runChecks(ctx, kc, o, pre, mode, wait, c.out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.controlPlane, "control-plane-namespace", meshdefaults.ControlPlaneNamespace, "the control plane's namespace")
	f.DurationVar(&o.anchorMin, "anchor-min-validity", 7*24*time.Hour, "fail when the trust anchor expires sooner than this")
	f.DurationVar(&o.issuerMin, "issuer-min-validity", 24*time.Hour, "fail when the identity issuer expires sooner than this (it is renewed 480h before by default; the identity service stops signing when less than a workload lifetime, 24h by default, is left)")
	f.DurationVar(&wait, "wait", 0, "repeat the checks until they all pass or this long has passed (for scripts)")
	f.BoolVar(&pre, "pre", false, "check a cluster before 'weft install': API server and version, cert-manager, your permissions, no Weft installed by another tool, the Gateway API CRDs")
	f.StringVar(&gw, "gateway-api", string(gatewayapi.Auto), "with --pre: the --gateway-api mode 'weft install' will run with")
	_ = cmd.RegisterFlagCompletionFunc("gateway-api", cobra.FixedCompletions([]string{"auto", "standard", "experimental", "none"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// runChecks runs the checks, again every 2s until they pass or wait has passed, and
// prints the last round. A failed check ends the command with exit code 1.
func runChecks(ctx context.Context, kc *kubeClients, o checkOptions, pre bool, mode gatewayapi.Mode, wait time.Duration, stdout io.Writer) error {
	deadline := time.Now().Add(wait)
	for {
		var results []checkResult
		if pre {
			results = checkPre(ctx, kc, mode)
		} else {
			results = check(ctx, kc, o, time.Now())
		}
		failed := 0
		for _, r := range results {
			if !r.ok {
				failed++
			}
		}
		if failed == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			printCheck(stdout, results)
			if failed > 0 {
				fmt.Fprintf(stdout, "\n%d of %d checks failed\n", failed, len(results))
				return silentExit(1)
			}
			fmt.Fprintf(stdout, "\nAll %d checks passed\n", len(results))
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

func printCheck(w io.Writer, results []checkResult) {
	section := ""
	for _, r := range results {
		if r.section != section {
			if section != "" {
				fmt.Fprintln(w)
			}
			section = r.section
			fmt.Fprintln(w, section)
		}
		mark := "[ok]  "
		if !r.ok {
			mark = "[FAIL]"
		}
		fmt.Fprintf(w, "  %s %s\n", mark, r.message)
		if !r.ok && r.hint != "" {
			fmt.Fprintf(w, "         hint: %s\n", r.hint)
		}
	}
}

// check runs every check against the cluster. It never stops at the first failure: the
// point is to show everything that is wrong at once.
func check(ctx context.Context, kc *kubeClients, o checkOptions, now time.Time) []checkResult {
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
	add(api, true, "", "API server %s reachable (Kubernetes %s)", kc.config.Host, v.GitVersion)

	out = append(out, checkControlPlane(ctx, kc.client, o.controlPlane)...)
	if in, err := gatewayapi.Inspect(ctx, kc.client); err != nil {
		add("Gateway API", false, "", "%v", err)
	} else {
		out = append(out, checkGatewayAPIInstalled(in, false)...)
	}
	out = append(out, checkMesh(ctx, kc.client, o, now)...)
	out = append(out, checkDataPlane(ctx, kc.client, o.controlPlane)...)
	out = append(out, checkPolicies(ctx, kc.client, o.controlPlane)...)
	return out
}

func checkControlPlane(ctx context.Context, c client.Client, ns string) []checkResult {
	const section = "Control plane"
	var out []checkResult
	add := func(ok bool, hint, format string, args ...any) {
		out = append(out, checkResult{section: section, ok: ok, message: fmt.Sprintf(format, args...), hint: hint})
	}
	d := &appsv1.Deployment{}
	switch err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllerDeployment}, d); {
	case apierrors.IsNotFound(err):
		add(false, "install Weft: kubectl apply -k config/default", "Deployment %s/%s not found", ns, controllerDeployment)
		return out
	case err != nil:
		add(false, "", "reading Deployment %s/%s: %v", ns, controllerDeployment, err)
		return out
	}
	available := false
	for _, cond := range d.Status.Conditions {
		if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue {
			available = true
		}
	}
	state := "is Available"
	if !available || d.Status.ReadyReplicas == 0 {
		state = "is not Available"
	}
	add(available && d.Status.ReadyReplicas > 0,
		fmt.Sprintf("kubectl -n %s describe deploy/%s; kubectl -n %s logs deploy/%s; an unready replica's /readyz names the failing check",
			ns, controllerDeployment, ns, controllerDeployment),
		"Deployment %s %s (%d/%d replicas ready)", controllerDeployment, state, d.Status.ReadyReplicas, ptrOr(d.Spec.Replicas, 1))

	for _, svc := range controlPlaneServices {
		slices := &discoveryv1.EndpointSliceList{}
		if err := c.List(ctx, slices, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: svc}); err != nil {
			add(false, "", "listing the endpoints of Service %s: %v", svc, err)
			continue
		}
		ready := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready == nil || *e.Conditions.Ready {
					ready++
				}
			}
		}
		add(ready > 0, fmt.Sprintf("the Service selects weft-controller pods: are they Ready? kubectl -n %s get pods,svc,endpointslices", ns),
			"Service %s has %d ready endpoints", svc, ready)
	}
	return append(out, checkTapAPI(ctx, c, ns))
}

// tapAPIService is the APIService through which the kube-apiserver serves the tap API
// (config/tap/apiservice.yaml).
var tapAPIService = tap.Version + "." + tap.Group

// checkTapAPI checks that the kube-apiserver finds the tap API available. When it does
// not, every discovery call (kubectl get, any client) warns about the group and `weft
// tap` fails, so the aggregator's own reason is the most useful message.
func checkTapAPI(ctx context.Context, c client.Client, ns string) checkResult {
	r := checkResult{section: "Control plane"}
	as := &unstructured.Unstructured{}
	as.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiregistration.k8s.io", Version: "v1", Kind: "APIService"})
	switch err := c.Get(ctx, types.NamespacedName{Name: tapAPIService}, as); {
	case apierrors.IsNotFound(err):
		r.message = "APIService " + tapAPIService + " not found: weft tap and the dashboard's tap view cannot work"
		r.hint = "it is part of config/default (config/tap) and of the Helm chart: reinstall the control plane"
		return r
	case err != nil:
		r.message = fmt.Sprintf("reading APIService %s: %v", tapAPIService, err)
		return r
	}
	conds, _, _ := unstructured.NestedSlice(as.Object, "status", "conditions")
	for _, raw := range conds {
		cond, _ := raw.(map[string]any)
		if cond["type"] != "Available" {
			continue
		}
		if cond["status"] == "True" {
			r.ok = true
			r.message = "APIService " + tapAPIService + " is Available"
			return r
		}
		r.message = fmt.Sprintf("APIService %s is not Available: %v: %v", tapAPIService, cond["reason"], cond["message"])
		r.hint = fmt.Sprintf("the API server proxies the tap API to Service %s/weft-tap (weft-controller's :8443): kubectl describe apiservice %s; kubectl -n %s get endpointslices -l kubernetes.io/service-name=weft-tap",
			ns, tapAPIService, ns)
		return r
	}
	r.message = "APIService " + tapAPIService + " has no Available condition yet"
	r.hint = "the API server sets it within seconds of the APIService's creation: run weft check --wait 30s"
	return r
}

func checkMesh(ctx context.Context, c client.Client, o checkOptions, now time.Time) []checkResult {
	const section = "Mesh and certificates"
	var out []checkResult
	add := func(ok bool, hint, format string, args ...any) {
		out = append(out, checkResult{section: section, ok: ok, message: fmt.Sprintf(format, args...), hint: hint})
	}
	m := &meshv1alpha1.Mesh{}
	switch err := c.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, m); {
	case apierrors.IsNotFound(err):
		add(false, "apply one: kubectl apply -f config/samples/mesh.yaml", "Mesh %q not found", meshv1alpha1.MeshName)
		return out
	case err != nil:
		add(false, "are Weft's CRDs installed? kubectl apply -k config/default", "reading the Mesh: %v", err)
		return out
	}
	ready := meta.FindStatusCondition(m.Status.Conditions, meshv1alpha1.ConditionReady)
	if ready != nil && ready.Status == metav1.ConditionTrue {
		add(true, "", "Mesh %q is Ready (trust domain %s)", m.Name, m.Spec.TrustDomain)
	} else {
		why := "no Ready condition yet"
		var notTrue []string
		for _, cond := range m.Status.Conditions {
			if cond.Status != metav1.ConditionTrue {
				notTrue = append(notTrue, fmt.Sprintf("%s=%s (%s: %s)", cond.Type, cond.Status, cond.Reason, cond.Message))
			}
		}
		if len(notTrue) > 0 {
			why = strings.Join(notTrue, "; ")
		}
		add(false, "kubectl describe mesh default; is cert-manager running? kubectl get certificates -n "+o.controlPlane,
			"Mesh %q is not Ready: %s", m.Name, why)
	}

	certs := []struct {
		what, name string
		status     *meshv1alpha1.CertificateStatus
		min        time.Duration
	}{
		{"trust anchor", trustAnchorCert, m.Status.TrustAnchor, o.anchorMin},
		{"identity issuer", issuerCert, m.Status.Issuer, o.issuerMin},
	}
	for _, ct := range certs {
		hint := fmt.Sprintf("kubectl -n %s describe certificate %s; kubectl -n %s get certificaterequests", o.controlPlane, ct.name, o.controlPlane)
		cert := &cmv1.Certificate{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: o.controlPlane, Name: ct.name}, cert); err != nil {
			add(false, hint, "cert-manager Certificate %s: %v", ct.name, err)
		} else {
			certReady := false
			msg := "no Ready condition"
			for _, cond := range cert.Status.Conditions {
				if cond.Type == cmv1.CertificateConditionReady {
					certReady = cond.Status == cmmeta.ConditionTrue
					msg = cond.Message
				}
			}
			add(certReady, hint, "cert-manager Certificate %s is Ready%s", ct.name, notReadyDetail(certReady, msg))
		}
		if ct.status == nil || ct.status.NotAfter == nil {
			add(false, hint, "the Mesh's status does not describe the %s yet", ct.what)
			continue
		}
		left := ct.status.NotAfter.Sub(now)
		switch {
		case left <= 0:
			add(false, hint+"; proxies cannot renew their certificates", "the %s EXPIRED at %s", ct.what, ct.status.NotAfter.UTC().Format(time.RFC3339))
		case left < ct.min:
			add(false, hint+"; cert-manager should have renewed it", "the %s expires in %s (at %s), sooner than %s",
				ct.what, roundDuration(left), ct.status.NotAfter.UTC().Format(time.RFC3339), roundDuration(ct.min))
		default:
			add(true, "", "the %s is valid for %s (until %s)", ct.what, roundDuration(left), ct.status.NotAfter.UTC().Format(time.RFC3339))
		}
		// cert-manager renews at renewalTime; one long past means renewal is stuck.
		if rt := ct.status.RenewalTime; rt != nil && now.Sub(rt.Time) > 10*time.Minute {
			add(false, hint, "the %s's renewal is overdue since %s", ct.what, rt.UTC().Format(time.RFC3339))
		}
	}
	return out
}

func notReadyDetail(ok bool, msg string) string {
	if ok {
		return ""
	}
	return " -- it is not: " + msg
}

// checkDataPlane checks every pod of every namespace that asks for injection.
func checkDataPlane(ctx context.Context, c client.Client, controlPlane string) []checkResult {
	const section = "Data plane"
	var out []checkResult
	add := func(ok bool, hint, format string, args ...any) {
		out = append(out, checkResult{section: section, ok: ok, message: fmt.Sprintf(format, args...), hint: hint})
	}
	nss := &corev1.NamespaceList{}
	if err := c.List(ctx, nss); err != nil {
		add(false, "", "listing namespaces: %v", err)
		return out
	}
	var meshed []string
	for _, ns := range nss.Items {
		if ns.Name != controlPlane && (ns.Labels[inject.AnnotationInject] == inject.InjectEnabled || ns.Annotations[inject.AnnotationInject] == inject.InjectEnabled) {
			meshed = append(meshed, ns.Name)
		}
	}
	sort.Strings(meshed)
	if len(meshed) == 0 {
		add(true, "", "no namespace is annotated %s=%s yet (nothing to check)", inject.AnnotationInject, inject.InjectEnabled)
		return out
	}
	for _, ns := range meshed {
		cm := &corev1.ConfigMap{}
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: inject.TrustRootsConfigMap}, cm)
		add(err == nil && cm.Data[inject.TrustRootsKey] != "",
			"the Mesh reconciler publishes it once the Mesh is Ready: kubectl describe mesh default",
			"namespace %s has the trust roots ConfigMap %s", ns, inject.TrustRootsConfigMap)

		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(ns)); err != nil {
			add(false, "", "listing pods in %s: %v", ns, err)
			continue
		}
		var notInjected, notReady []string
		checked := 0
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil {
				continue // finished Job pods and pods on their way out
			}
			if p.Annotations[inject.AnnotationInject] == inject.InjectDisabled || p.Labels[inject.AnnotationInject] == inject.InjectDisabled {
				continue // opted out on purpose
			}
			checked++
			if injected, _ := inject.ProxyAdminPort(p); !injected {
				notInjected = append(notInjected, p.Name)
				continue
			}
			if !podReady(p) {
				notReady = append(notReady, p.Name+" ("+podNotReadyReason(p)+")")
			}
		}
		add(len(notInjected) == 0,
			fmt.Sprintf("these pods started before injection was enabled or while the webhook was down: kubectl -n %s rollout restart deploy (or delete the pods)", ns),
			"namespace %s: %d of %d pods have the proxy%s", ns, checked-len(notInjected), checked, list(notInjected))
		add(len(notReady) == 0,
			fmt.Sprintf("kubectl -n %s describe pod <pod>; kubectl -n %s logs <pod> -c %s", ns, ns, inject.ProxyContainerName),
			"namespace %s: %d of %d meshed pods are ready%s", ns, checked-len(notInjected)-len(notReady), checked-len(notInjected), list(notReady))
	}
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podNotReadyReason names the first container that holds the pod back and why.
func podNotReadyReason(p *corev1.Pod) string {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if cs.Ready {
			continue
		}
		switch {
		case cs.State.Waiting != nil:
			return cs.Name + ": " + cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
			return fmt.Sprintf("%s: exited %d", cs.Name, cs.State.Terminated.ExitCode)
		case cs.State.Running != nil:
			return cs.Name + ": running, not ready"
		}
	}
	return string(p.Status.Phase)
}

func list(names []string) string {
	if len(names) == 0 {
		return ""
	}
	const most = 5
	if len(names) > most {
		return fmt.Sprintf(": %s and %d more", strings.Join(names[:most], ", "), len(names)-most)
	}
	return ": " + strings.Join(names, ", ")
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

func roundDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	default:
		return d.Round(time.Second).String()
	}
}
