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
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// LoadStats mirrors cmd/weft-demo's: what the load generator counted.
type LoadStats struct {
	Sent           uint64             `json:"sent"`
	Requests       uint64             `json:"requests"`
	Failures       uint64             `json:"failures"`
	Errors         uint64             `json:"errors"`
	ByStatus       map[string]uint64  `json:"byStatus"`
	ByVersion      map[string]uint64  `json:"byVersion"`
	ElapsedSeconds float64            `json:"elapsedSeconds"`
	LatencyMs      map[string]float64 `json:"latencyMs"`
	LastError      string             `json:"lastError"`
	// FailuresBySendSecond counts failures by the Unix second their request was sent.
	FailuresBySendSecond map[string]uint64 `json:"failuresBySendSecond"`
	Done                 bool              `json:"done"`
}

// loadJob describes a one-shot load generator run as a Job in the suite's namespace.
type loadJob struct {
	name    string
	args    []string // weft-demo load flags (target, rps, requests, ...)
	meshed  bool     // false: the pod opts out of injection
	timeout time.Duration
}

// runLoadJob runs `weft-demo load --json` as a Job, waits for it to complete (a meshed
// Job completing is itself a check: the native sidecar must not keep it alive), and
// returns what the generator printed. The Job is deleted afterwards.
func runLoadJob(ctx context.Context, t *testing.T, j loadJob) (LoadStats, *corev1.Pod) {
	t.Helper()
	if j.timeout == 0 {
		j.timeout = 90 * time.Second
	}
	ann := map[string]string{}
	if !j.meshed {
		ann["weft.dev/inject"] = "disabled"
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: j.name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To[int32](0),
			ActiveDeadlineSeconds: ptr.To(int64(j.timeout.Seconds())),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"e2e-job": j.name}, Annotations: ann},
				Spec: corev1.PodSpec{
					ServiceAccountName: "client",
					RestartPolicy:      corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name: "load", Image: "weft-demo:dev", ImagePullPolicy: corev1.PullIfNotPresent,
						Args: append([]string{"load", "--json", "--report=0"}, j.args...),
					}},
				},
			},
		},
	}
	if err := env.client.Create(ctx, job); err != nil {
		t.Fatalf("creating job %s: %v", j.name, err)
	}
	t.Cleanup(func() {
		_ = env.client.Delete(context.Background(), job, &deleteBackground)
	})
	var pod *corev1.Pod
	err := eventually(ctx, j.timeout+30*time.Second, time.Second, func() error {
		cur := &batchv1.Job{}
		if err := env.client.Get(ctx, objKey(job), cur); err != nil {
			return err
		}
		for _, c := range cur.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobComplete:
				return nil
			case batchv1.JobFailed:
				return fmt.Errorf("job %s failed: %s", j.name, c.Message)
			}
		}
		return fmt.Errorf("job %s not complete: %+v", j.name, cur.Status)
	})
	pods, perr := env.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "e2e-job=" + j.name})
	if perr == nil && len(pods.Items) > 0 {
		pod = &pods.Items[0]
	}
	logs := ""
	if pod != nil {
		b, lerr := env.kube.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "load"}).DoRaw(ctx)
		if lerr != nil {
			t.Logf("logs of %s: %v", pod.Name, lerr)
		}
		logs = string(b)
	}
	if err != nil {
		desc, _ := kubectl(ctx, "-n", ns, "describe", "pods", "-l", "e2e-job="+j.name)
		t.Fatalf("%v\nlogs:\n%s\n%s", err, logs, desc)
	}
	var s LoadStats
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("job %s: reading the generator's JSON: %v\n%s", j.name, err, logs)
	}
	t.Logf("job %s: %d requests, %d failures, statuses %v, versions %v, latency %v ms", j.name, s.Requests, s.Failures, s.ByStatus, s.ByVersion, s.LatencyMs)
	return s, pod
}

// podStats reads a running load generator's cumulative counts through the API server's
// pod proxy (its /stats on port 9102).
func podStats(ctx context.Context, pod string) (LoadStats, error) {
	var s LoadStats
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := env.kube.CoreV1().Pods(ns).ProxyGet("http", pod, "9102", "stats", nil).DoRaw(ctx)
	if err != nil {
		return s, fmt.Errorf("reading %s's stats: %w", pod, err)
	}
	return s, json.Unmarshal(b, &s)
}

// steadyLoadPod is the running pod of the steady-load Deployment.
func steadyLoadPod(ctx context.Context, t *testing.T) string {
	t.Helper()
	pods, err := env.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=steady-load"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			return p.Name
		}
	}
	t.Fatalf("no running steady-load pod")
	return ""
}

// failuresSentFrom counts the failures of requests sent at or after the Unix second
// from. A request sent before an event but failing after it (a timeout) is not counted.
func (s LoadStats) failuresSentFrom(from int64) uint64 {
	var n uint64
	for k, v := range s.FailuresBySendSecond {
		if sec, err := strconv.ParseInt(k, 10, 64); err == nil && sec >= from {
			n += v
		}
	}
	return n
}
