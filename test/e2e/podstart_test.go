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
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/weftmesh/weft/internal/inject"
)

// podStartBudget is the most the mesh may add to a pod's create→Ready time at p50.
// Issue 19 asks for 1 s (Linkerd claims about 1 s, Istio 3–5 s); measured here with
// the postStart hook it is 1.4–1.7 s on the shared 2-core machine (load average
// 20–50), of which about 0.5 s is the kubelet noticing weft-init's exit only at its
// next once-a-second relist (docs/injection.md, "Start-up order"). The budget catches
// a return of the startup probe (2.4–3.6 s here) or anything else that adds a probe
// period. WEFT_E2E_PODSTART_BUDGET overrides it.
const podStartBudget = 2 * time.Second

// podStartRuns is how many pods of each kind are measured.
const podStartRuns = 10

// TestPodStart measures what the mesh costs a pod's start: pod create → Ready for a
// meshed and an unmeshed pod of the same image and readiness probe, created one at a
// time and alternating, so that both see the same load. Status timestamps have 1 s
// granularity, so the test watches each pod and stamps every change with the local
// clock (the cluster runs on this machine). It prints p50 and max of each kind, their
// difference, and for meshed pods when each step of the start was first seen: weft-init
// done, weft-proxy running, weft-proxy started (startup probe or postStart hook
// passed), app running, Ready, and, from the proxy's own log, when it held a
// certificate.
func TestPodStart(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	budget := podStartBudget
	if s := os.Getenv("WEFT_E2E_PODSTART_BUDGET"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("WEFT_E2E_PODSTART_BUDGET=%q: %v", s, err)
		}
		budget = d
	}

	// The pods stay until the test ends: a pod stopping while the next one starts
	// would load the node for one kind more than for the other.
	t.Cleanup(func() {
		err := env.kube.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: "app=podstart"})
		if err != nil {
			t.Errorf("deleting the measured pods: %v", err)
		}
	})
	// One pod of each kind first, unmeasured: the first meshed pod of a run pays for
	// things no later pod does (the image's first use, the node's first TokenRequest
	// for the ServiceAccount). The injected warm-up pod is also the template of the
	// startup-probe kind.
	warm, err := startPod(ctx, t, podStartSpec("podstart-warm-meshed", true), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := startPod(ctx, t, podStartSpec("podstart-warm-plain", false), false); err != nil {
		t.Fatal(err)
	}
	kinds := []string{kindMeshed, kindPlain}
	if os.Getenv("WEFT_E2E_PODSTART_COMPARE") != "" {
		// About 30 s more: off by default to keep the suite short.
		kinds = append(kinds, kindProbed)
	}
	runs := map[string][]podStart{}
	for i := range podStartRuns {
		for _, kind := range kinds {
			var pod *corev1.Pod
			switch kind {
			case kindPlain, kindMeshed:
				pod = podStartSpec(fmt.Sprintf("podstart-%s-%d", kind, i), kind == kindMeshed)
			case kindProbed:
				pod = withStartupProbe(warm.pod, fmt.Sprintf("podstart-%s-%d", kind, i))
			}
			s, err := startPod(ctx, t, pod, kind != kindPlain)
			if err != nil {
				t.Fatal(err)
			}
			runs[kind] = append(runs[kind], s)
		}
	}

	plain, meshed := summarize(runs[kindPlain]), summarize(runs[kindMeshed])
	t.Logf("pod create -> Ready, %d pods each: unmeshed p50 %s max %s; meshed p50 %s max %s; the mesh's cost at p50 %s (budget %s)",
		podStartRuns, ms(plain.p50), ms(plain.max), ms(meshed.p50), ms(meshed.max), ms(meshed.p50-plain.p50), budget)
	if len(runs[kindProbed]) > 0 {
		probed := summarize(runs[kindProbed])
		t.Logf("  for comparison, meshed with the proxy's former startup probe instead of its postStart hook: p50 %s max %s; cost at p50 %s",
			ms(probed.p50), ms(probed.max), ms(probed.p50-plain.p50))
	}
	// The breakdown: each step's p50 in ms after the create call, as first seen.
	for _, kind := range kinds {
		for _, step := range []string{"scheduled", "sandbox ready", inject.InitContainerName + " done", inject.ProxyContainerName + " running",
			"certificate (proxy log)", inject.ProxyContainerName + " started", "app running", "Ready"} {
			var ds []time.Duration
			for _, s := range runs[kind] {
				if d, ok := s.steps[step]; ok {
					ds = append(ds, d)
				}
			}
			if len(ds) > 0 {
				t.Logf("  %-14s %-26s p50 %s (%d pods)", kind+":", step, ms(percentile(ds, 50)), len(ds))
			}
		}
	}
	if cost := meshed.p50 - plain.p50; cost > budget {
		t.Errorf("the mesh adds %s to a pod's start at p50 (meshed %s, unmeshed %s), over the budget of %s",
			ms(cost), ms(meshed.p50), ms(plain.p50), budget)
	}
}

// The kinds of measured pod: unmeshed, meshed as the injector makes them, and, with
// WEFT_E2E_PODSTART_COMPARE set, meshed with the proxy's startup probe that the
// postStart hook replaced (the A/B of that change, measured under the same load).
const (
	kindPlain  = "unmeshed"
	kindMeshed = "meshed"
	kindProbed = "startup-probe"
)

// podStart is one pod's start: create → Ready, and when each step was first seen.
type podStart struct {
	pod   *corev1.Pod
	ready time.Duration
	steps map[string]time.Duration
}

type startSummary struct{ p50, max time.Duration }

func summarize(runs []podStart) startSummary {
	ds := make([]time.Duration, len(runs))
	for i, r := range runs {
		ds[i] = r.ready
	}
	return startSummary{p50: percentile(ds, 50), max: percentile(ds, 100)}
}

// percentile is the nearest-rank percentile of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

// withStartupProbe is an injected pod as the injector made it before the postStart
// hook: no hook, and the startup probe GET /ready on the admin port every second for
// up to two minutes. It carries the injected annotation, so the injector leaves it be.
func withStartupProbe(injected *corev1.Pod, name string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
		Labels: injected.Labels, Annotations: injected.Annotations}, Spec: *injected.Spec.DeepCopy()}
	p.Spec.NodeName = "" // scheduled like the others
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		if c.Name != inject.ProxyContainerName {
			continue
		}
		c.Lifecycle = nil
		c.StartupProbe = &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(4191)}},
			PeriodSeconds:    1,
			TimeoutSeconds:   1,
			FailureThreshold: 120,
		}
	}
	return p
}

// podStartSpec is the measured pod: the demo backend with a 1 s readiness probe, the
// same for both kinds but for weft.dev/inject.
func podStartSpec(name string, meshed bool) *corev1.Pod {
	inj := inject.InjectDisabled
	if meshed {
		inj = inject.InjectEnabled
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "podstart"},
			Annotations: map[string]string{inject.AnnotationInject: inj}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "echo",
			TerminationGracePeriodSeconds: ptrTo[int64](2),
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           "weft-demo:dev",
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            []string{"backend", "--addr=:8080", "--version=v1"},
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
					PeriodSeconds: 1,
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
				},
			}},
		},
	}
}

// startPod creates the pod, waits for Ready while stamping each status change with
// the local clock, and reads the proxy's log for when it held a certificate.
func startPod(ctx context.Context, t *testing.T, pod *corev1.Pod, meshed bool) (podStart, error) {
	t.Helper()
	name := pod.Name
	pods := env.kube.CoreV1().Pods(ns)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		return podStart{}, err
	}
	defer w.Stop()
	t0 := time.Now()
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return podStart{}, fmt.Errorf("creating %s: %w", name, err)
	}
	s := podStart{steps: map[string]time.Duration{}}
	seen := func(step string, now time.Time) {
		if _, ok := s.steps[step]; !ok {
			s.steps[step] = now.Sub(t0)
		}
	}
	var last *corev1.Pod
	for {
		var ev watch.Event
		var ok bool
		select {
		case ev, ok = <-w.ResultChan():
		case <-ctx.Done():
			return podStart{}, fmt.Errorf("pod %s not Ready after a minute: %s", name, describePod(last))
		}
		if !ok {
			return podStart{}, fmt.Errorf("the watch of pod %s ended before it was Ready: %s", name, describePod(last))
		}
		now := time.Now()
		p, isPod := ev.Object.(*corev1.Pod)
		if !isPod {
			continue
		}
		last = p
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case corev1.PodScheduled:
				seen("scheduled", now)
			case corev1.PodReadyToStartContainers:
				seen("sandbox ready", now)
			case corev1.PodReady:
				seen("Ready", now)
			}
		}
		for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			if cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0 {
				seen(cs.Name+" done", now)
			}
			if cs.State.Running != nil {
				seen(cs.Name+" running", now)
			}
			if cs.Started != nil && *cs.Started && cs.Name == inject.ProxyContainerName {
				seen(cs.Name+" started", now)
			}
		}
		if _, ok := s.steps["Ready"]; ok {
			break
		}
	}
	s.ready, s.pod = s.steps["Ready"], last
	if meshed {
		if !slices.ContainsFunc(last.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == inject.ProxyContainerName }) {
			return podStart{}, fmt.Errorf("pod %s was not injected: the measurement would compare two unmeshed pods", name)
		}
		if at, err := certificateAt(ctx, name); err != nil {
			t.Logf("pod %s: reading when the proxy held its certificate: %v", name, err)
		} else {
			s.steps["certificate (proxy log)"] = at.Sub(t0)
		}
	} else if len(last.Spec.InitContainers) > 0 {
		return podStart{}, fmt.Errorf("pod %s has init containers %v: it was injected", name, last.Spec.InitContainers)
	}
	return s, nil
}

// certificateAt reads the time of the proxy's "Obtained identity certificate" line.
// Its clock is this machine's: the cluster runs here.
func certificateAt(ctx context.Context, pod string) (time.Time, error) {
	rc, err := env.kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: inject.ProxyContainerName}).Stream(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		var line struct {
			TS  string `json:"ts"`
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "Obtained identity certificate" {
			continue
		}
		// zap's ISO8601 encoder: 2006-01-02T15:04:05.000Z0700.
		return time.Parse("2006-01-02T15:04:05.000Z0700", line.TS)
	}
	return time.Time{}, fmt.Errorf("no certificate line in the proxy's log (%v)", sc.Err())
}

func describePod(p *corev1.Pod) string {
	if p == nil {
		return "no status seen"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s", p.Status.Phase)
	for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
		fmt.Fprintf(&b, "; %s ready=%v state=%+v", cs.Name, cs.Ready, cs.State)
	}
	return b.String()
}
