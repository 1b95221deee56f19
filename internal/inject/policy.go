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

package inject

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/defaultpolicy"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// inboundPolicyNames are the values of config.weft.dev/default-inbound-policy, in the
// order the docs list them.
var inboundPolicyNames = []string{
	string(meshv1alpha1.InboundAllUnauthenticated), string(meshv1alpha1.InboundAllAuthenticated),
	string(meshv1alpha1.InboundClusterUnauthenticated), string(meshv1alpha1.InboundClusterAuthenticated),
	string(meshv1alpha1.InboundDeny), string(meshv1alpha1.InboundAudit),
}

// DefaultInboundPolicy decides a pod's default inbound policy from the Mesh's proxy spec
// and the namespace's and the pod's config.weft.dev/default-inbound-policy annotations,
// with the Mesh's floor applied: the one rule (internal/defaultpolicy) the inbound
// policy compiler uses too, so the proxy's environment and its policy stream agree.
func DefaultInboundPolicy(proxy meshv1alpha1.ProxySpec, nsAnnotations, podAnnotations map[string]string) defaultpolicy.Decision {
	return defaultpolicy.Decide(proxy, nsAnnotations[AnnotationDefaultInboundPolicy], podAnnotations[AnnotationDefaultInboundPolicy])
}

// DefaultInboundPolicyWarnings says, as admission warnings, what a pod's author would not
// otherwise see: an annotation value that names no policy (ignored: the level above
// applies, which the floor keeps at least as strict as the platform team set), and a
// choice the Mesh's floor narrowed.
func DefaultInboundPolicyWarnings(proxy meshv1alpha1.ProxySpec, nsName string, nsAnnotations, podAnnotations map[string]string) []string {
	var out []string
	for _, level := range []struct{ what, v string }{
		{"namespace " + nsName, nsAnnotations[AnnotationDefaultInboundPolicy]},
		{"pod", podAnnotations[AnnotationDefaultInboundPolicy]},
	} {
		if level.v == "" {
			continue
		}
		if _, ok := defaultpolicy.Parse(meshv1alpha1.InboundPolicy(level.v)); !ok {
			out = append(out, fmt.Sprintf("weft: the %s's annotation %s=%q is not an inbound policy and was ignored; use one of %s",
				level.what, AnnotationDefaultInboundPolicy, level.v, strings.Join(inboundPolicyNames, ", ")))
		}
	}
	d := DefaultInboundPolicy(proxy, nsAnnotations, podAnnotations)
	if d.Narrowed {
		out = append(out, fmt.Sprintf("weft: the default inbound policy %s (chosen by the %s) is wider than the Mesh's floor "+
			"spec.proxy.inboundPolicyFloor=%s; the proxy enforces %s. Choose a policy within the floor to silence this warning",
			d.Chosen, strings.ToLower(string(d.Source)), proxy.InboundPolicyFloor, d.Policy.Name()))
	}
	return out
}

// withoutDefaultInboundPolicy is annotations less config.weft.dev/default-inbound-policy,
// which DefaultInboundPolicy decides: an invalid value there is a warning at injection
// (the validating webhooks refuse it on namespaces and workloads; a pod that got past
// them still gets a proxy, with the stricter of the levels above), not a refusal.
func withoutDefaultInboundPolicy(annotations map[string]string) map[string]string {
	if _, ok := annotations[AnnotationDefaultInboundPolicy]; !ok {
		return annotations
	}
	out := maps.Clone(annotations)
	delete(out, AnnotationDefaultInboundPolicy)
	return out
}

// clusterNetworks is the Mesh's spec.clusterNetworks as WEFT_CLUSTER_NETWORKS carries
// it, the defaults when the Mesh sets none.
func clusterNetworks(mesh meshv1alpha1.MeshSpec) string {
	nets := mesh.ClusterNetworks
	if len(nets) == 0 {
		nets = meshdefaults.ClusterNetworks()
	}
	return strings.Join(nets, ",")
}

// Bounds of WEFT_INBOUND_PROBE_PATHS. The API server caps a pod at a few hundred
// containers with three probes each; the proxy parses the value at start-up and keeps
// it in memory, so it is bounded well below what any real pod declares, and a pod over
// the bound is refused rather than given a proxy that would deny some of its probes.
const (
	maxProbePaths      = 64
	maxProbePathsBytes = 4096
)

// ProbePaths returns WEFT_INBOUND_PROBE_PATHS for a pod: "port:path,port:path" for every
// HTTP probe (liveness, readiness, startup) of its containers and native sidecars, named
// ports resolved against the probing container's ports, sorted and without duplicates.
// The inbound proxy admits GET and HEAD to exactly these paths whatever the policy, so a
// restrictive policy never fails the pod's own health checks; only what the spec
// declares is listed. Left out, with the reason in skipped: HTTPS probes (the proxy
// cannot read their path, and the kubelet's TLS is forwarded as the app's own), probes
// to another host, named ports no container port has, and paths the list format cannot
// carry (commas, spaces, control characters). A pod over the bounds gets an error.
func ProbePaths(spec *corev1.PodSpec) (value string, skipped []string, err error) {
	type entry struct {
		port int32
		path string
	}
	seen := map[entry]bool{}
	var entries []entry
	add := func(c *corev1.Container, kind string, p *corev1.Probe) {
		if p == nil || p.HTTPGet == nil {
			return
		}
		get := p.HTTPGet
		what := fmt.Sprintf("the %s probe of container %s", kind, c.Name)
		port, ok := resolveProbePort(c, get.Port)
		switch {
		case get.Scheme == corev1.URISchemeHTTPS:
			skipped = append(skipped, what+" uses HTTPS, whose path the proxy cannot read")
			return
		case get.Host != "":
			skipped = append(skipped, what+" probes another host ("+get.Host+")")
			return
		case !ok:
			skipped = append(skipped, fmt.Sprintf("%s names port %s, which is not a port number or a port the container declares", what, get.Port.String()))
			return
		}
		path, ok := probePath(get.Path)
		if !ok {
			skipped = append(skipped, fmt.Sprintf("%s has path %q, which has a comma, space or control character", what, get.Path))
			return
		}
		e := entry{port, path}
		if !seen[e] {
			seen[e] = true
			entries = append(entries, e)
		}
	}
	probes := func(c *corev1.Container) {
		add(c, "liveness", c.LivenessProbe)
		add(c, "readiness", c.ReadinessProbe)
		add(c, "startup", c.StartupProbe)
	}
	for i := range spec.InitContainers {
		// Plain init containers run to completion before the app and are never
		// probed; native sidecars (restartPolicy Always) are.
		if c := &spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			probes(c)
		}
	}
	for i := range spec.Containers {
		probes(&spec.Containers[i])
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if a.port != b.port {
			return int(a.port - b.port)
		}
		return strings.Compare(a.path, b.path)
	})
	parts := make([]string, len(entries))
	for i, e := range entries {
		parts[i] = strconv.Itoa(int(e.port)) + ":" + e.path
	}
	value = strings.Join(parts, ",")
	if len(entries) > maxProbePaths || len(value) > maxProbePathsBytes {
		return "", skipped, fmt.Errorf("the pod declares %d HTTP probe paths (%d bytes); the proxy takes at most %d (%d bytes): "+
			"probe fewer distinct paths", len(entries), len(value), maxProbePaths, maxProbePathsBytes)
	}
	return value, skipped, nil
}

// resolveProbePort is the port a probe reaches: a number, or the name of one of the
// probing container's ports (as the kubelet resolves it).
func resolveProbePort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	if p.Type == intstr.Int {
		return p.IntVal, p.IntVal >= 1 && p.IntVal <= 65535
	}
	for _, cp := range c.Ports {
		if p.StrVal != "" && cp.Name == p.StrVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// probePath is the path the kubelet requests for a probe's path field: "/" when empty, a
// leading "/" added, the query left off (the proxy matches the path alone). ok is false
// for a path the comma-separated list cannot carry.
func probePath(p string) (string, bool) {
	p, _, _ = strings.Cut(p, "?")
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	for _, r := range p {
		if r == ',' || r <= ' ' || r == 0x7f {
			return "", false
		}
	}
	return p, true
}
