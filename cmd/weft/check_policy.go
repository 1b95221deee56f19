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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/inbound"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/proxy/api"
)

// The reasons weft-controller writes that weft check reads (controllers/policy_status.go;
// the CLI does not import the controllers).
const (
	reasonNoPodsSelected = "NoPodsSelected"
)

// policyObject is what weft check reads of any policy kind: its name and status.
type policyObject struct {
	kind       string
	obj        client.Object
	conditions []metav1.Condition
	observed   int64
}

// checkPolicies reports the policy objects whose status weft-controller marks as not
// working (invalid, conflicting, naming missing objects), the Servers that select no
// pod, objects the controller has not reconciled, and meshed pods whose HTTP probes the
// inbound policy could deny.
func checkPolicies(ctx context.Context, c client.Client, controlPlane string) []checkResult {
	const section = "Authorization policy"
	var out []checkResult
	add := func(ok bool, hint, format string, args ...any) {
		out = append(out, checkResult{section: section, ok: ok, message: fmt.Sprintf(format, args...), hint: hint})
	}
	objs, err := listPolicyObjects(ctx, c)
	if err != nil {
		add(false, "are the policy.weft.dev CRDs installed? kubectl apply -k config/default", "listing the policy objects: %v", err)
		return out
	}
	counts := map[string]int{}
	healthy := 0
	for _, p := range objs {
		counts[p.kind]++
		name := fmt.Sprintf("%s %s/%s", p.kind, p.obj.GetNamespace(), p.obj.GetName())
		ready := meta.FindStatusCondition(p.conditions, meshv1alpha1.ConditionReady)
		if ready == nil || p.observed != p.obj.GetGeneration() || ready.ObservedGeneration != p.obj.GetGeneration() {
			add(false, "weft-controller writes it: is it running? kubectl -n "+controlPlane+" logs deploy/"+controllerDeployment,
				"%s has no status for its generation %d yet", name, p.obj.GetGeneration())
			continue
		}
		bad := false
		for _, cond := range p.conditions {
			if cond.Type == meshv1alpha1.ConditionReady || cond.Status == metav1.ConditionTrue {
				continue
			}
			bad = true
			add(false, "kubectl describe "+strings.ToLower(p.kind)+" -n "+p.obj.GetNamespace()+" "+p.obj.GetName(),
				"%s: %s=%s (%s): %s", name, cond.Type, cond.Status, cond.Reason, cond.Message)
		}
		if rr := meta.FindStatusCondition(p.conditions, meshv1alpha1.ConditionResolvedRefs); !bad && p.kind == "Server" &&
			rr != nil && rr.Reason == reasonNoPodsSelected {
			bad = true
			add(false, "fine while its workload is scaled to zero or not yet deployed; otherwise fix the podSelector or port",
				"%s selects no pod: %s", name, rr.Message)
		}
		if !bad {
			healthy++
		}
	}
	if len(objs) == 0 {
		add(true, "", "no Server or AuthorizationPolicy: every meshed port follows its default inbound policy")
	} else if healthy == len(objs) {
		// Each object that is not got its own failure above.
		add(true, "", "%d of %d policy objects are accepted, resolved and select pods (%s)", healthy, len(objs), summarizeCounts(counts))
	}
	out = append(out, checkProbes(ctx, c, controlPlane, section)...)
	return out
}

// summarizeCounts renders "2 Server, 1 AuthorizationPolicy" in a stable order.
func summarizeCounts(counts map[string]int) string {
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%d %s", counts[k], k)
	}
	return strings.Join(parts, ", ")
}

// listPolicyObjects lists the four policy kinds in every namespace, sorted by kind,
// namespace and name.
func listPolicyObjects(ctx context.Context, c client.Client) ([]policyObject, error) {
	var out []policyObject
	var srv policyv1alpha1.ServerList
	if err := c.List(ctx, &srv); err != nil {
		return nil, err
	}
	for i := range srv.Items {
		o := &srv.Items[i]
		out = append(out, policyObject{"Server", o, o.Status.Conditions, o.Status.ObservedGeneration})
	}
	var ap policyv1alpha1.AuthorizationPolicyList
	if err := c.List(ctx, &ap); err != nil {
		return nil, err
	}
	for i := range ap.Items {
		o := &ap.Items[i]
		out = append(out, policyObject{"AuthorizationPolicy", o, o.Status.Conditions, o.Status.ObservedGeneration})
	}
	var mt policyv1alpha1.MeshTLSAuthenticationList
	if err := c.List(ctx, &mt); err != nil {
		return nil, err
	}
	for i := range mt.Items {
		o := &mt.Items[i]
		out = append(out, policyObject{"MeshTLSAuthentication", o, o.Status.Conditions, o.Status.ObservedGeneration})
	}
	var na policyv1alpha1.NetworkAuthenticationList
	if err := c.List(ctx, &na); err != nil {
		return nil, err
	}
	for i := range na.Items {
		o := &na.Items[i]
		out = append(out, policyObject{"NetworkAuthentication", o, o.Status.Conditions, o.Status.ObservedGeneration})
	}
	return out, nil
}

// checkProbes says, per namespace with meshed pods that have HTTP probes, whether the
// kubelet's probes are exempt from the inbound policy. The proxy admits GET and HEAD to
// the probe paths of the policy it enforces, under every policy (Servers and default
// policies alike): the policy the control plane compiles (checked here by compiling it,
// as weft authz does; a miss would be a bug), and before that policy arrives or while
// the control plane is unreachable, the paths the injector put in
// WEFT_INBOUND_PROBE_PATHS (a pod injected by an older weft has none, and a restrictive
// default would then fail its probes exactly during a control-plane outage). HTTPS
// probes cannot be exempted: the proxy cannot read their path.
func checkProbes(ctx context.Context, c client.Client, controlPlane, section string) []checkResult {
	var out []checkResult
	add := func(ok bool, hint, format string, args ...any) {
		out = append(out, checkResult{section: section, ok: ok, message: fmt.Sprintf(format, args...), hint: hint})
	}
	nss := &corev1.NamespaceList{}
	if err := c.List(ctx, nss); err != nil {
		add(false, "", "listing namespaces: %v", err)
		return out
	}
	for _, ns := range nss.Items {
		if ns.Name == controlPlane {
			continue
		}
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(ns.Name)); err != nil {
			add(false, "", "listing pods in %s: %v", ns.Name, err)
			continue
		}
		var (
			in                        inbound.Input
			gathered                  bool
			uncovered, stale, skipped []string
			probed                    int
		)
		for i := range pods.Items {
			p := &pods.Items[i]
			proxy := proxyContainer(p)
			if proxy == nil || p.DeletionTimestamp != nil {
				continue
			}
			want, why, err := inject.ProbePaths(appSpec(p))
			if want == "" && len(why) == 0 && err == nil {
				continue // no HTTP probe: nothing the policy could deny
			}
			probed++
			if !gathered {
				if in, err = gatherAuthzInput(ctx, c, ns.Name); err != nil {
					add(false, "", "namespace %s: %v", ns.Name, err)
					break
				}
				gathered = true
			}
			in.Pod = p
			if missing := missingProbes(compileInbound(in), want); missing != "" {
				uncovered = append(uncovered, p.Name+" ("+missing+")")
			}
			if got, listed := envOf(proxy, "WEFT_INBOUND_PROBE_PATHS"); !listed || !coversProbes(got, want) {
				stale = append(stale, p.Name)
			}
			if len(why) > 0 {
				skipped = append(skipped, p.Name+" ("+why[0]+")")
			}
		}
		if probed == 0 || !gathered {
			continue
		}
		add(len(uncovered) == 0, "a bug in weft: please report it with the output of weft authz pod/<pod>",
			"namespace %s: the inbound policy exempts the HTTP probes of %d of %d probed meshed pods%s", ns.Name, probed-len(uncovered), probed, list(uncovered))
		if len(stale) > 0 {
			add(false, fmt.Sprintf("these pods were injected by an older weft (or edited): kubectl -n %s rollout restart deploy (or delete the pods)", ns.Name),
				"namespace %s: the proxies of %d pods do not know their probes before the control plane's policy arrives (start-up, outages)%s",
				ns.Name, len(stale), list(stale))
		}
		if len(skipped) > 0 {
			add(false, "use HTTP probes, or authorize the kubelet's address (a NetworkAuthentication of the node network) on those ports",
				"namespace %s: some probes cannot be exempted%s", ns.Name, list(skipped))
		}
	}
	return out
}

// missingProbes returns the "port:path" entries of want ("port:path,...") that the
// compiled policy does not exempt, comma-separated, "" when it exempts them all.
func missingProbes(p *api.InboundPolicy, want string) string {
	var missing []string
	for w := range strings.SplitSeq(want, ",") {
		port, path, ok := strings.Cut(w, ":")
		if !ok {
			continue
		}
		covered := slices.ContainsFunc(p.GetServers(), func(s *api.InboundServer) bool {
			return fmt.Sprint(s.GetPort()) == port && slices.Contains(s.GetProbePaths(), path)
		})
		if !covered {
			missing = append(missing, w)
		}
	}
	return strings.Join(missing, ",")
}

// proxyContainer returns the injected proxy container of a pod, nil when it has none.
func proxyContainer(p *corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == inject.ProxyContainerName {
				return &cs[i]
			}
		}
	}
	return nil
}

// appSpec is the pod's spec without what injection added, whose probes (the proxy's
// own, on its admin port) the inbound policy never sees.
func appSpec(p *corev1.Pod) *corev1.PodSpec {
	spec := p.Spec.DeepCopy()
	spec.InitContainers = slices.DeleteFunc(spec.InitContainers, func(c corev1.Container) bool {
		return c.Name == inject.ProxyContainerName || c.Name == inject.InitContainerName
	})
	spec.Containers = slices.DeleteFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == inject.ProxyContainerName })
	return spec
}

func envOf(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// coversProbes says whether the listed probe paths ("port:path,...") hold every one
// the pod's spec asks for.
func coversProbes(listed, want string) bool {
	have := strings.Split(listed, ",")
	for w := range strings.SplitSeq(want, ",") {
		if w != "" && !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
