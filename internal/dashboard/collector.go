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

package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/workload"
)

// pod is a running pod as the dashboard groups it.
type pod struct {
	uid       types.UID
	namespace string
	name      string
	workload  string // deploy/web, sts/db, ds/x, pod/y
	meshed    bool
	addr      string // podIP:adminPort of its proxy, "" when unmeshed or without an IP
}

// sample is a pod with its two latest scrapes (prev is nil after the first).
type sample struct {
	pod
	prev, cur *digest
}

// Collector scrapes every meshed pod's proxy /metrics every Interval, straight from
// the pod's IP (the dashboard runs in the cluster), and keeps the two latest scrapes
// per pod: the pages' rates are the difference over that window. One background loop
// serves every page and every viewer, so the proxies' load does not grow with them.
type Collector struct {
	Kube     kubernetes.Interface
	Interval time.Duration
	// HTTP reads /metrics; its Timeout bounds each scrape.
	HTTP *http.Client

	mu    sync.RWMutex
	pods  map[types.UID]*sample
	round time.Time
	err   error
}

// maxConcurrentScrapes bounds the proxies read at once.
const maxConcurrentScrapes = 8

// Run scrapes until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		c.collect(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Collector) collect(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.Interval+10*time.Second)
	defer cancel()
	pods, err := listPods(ctx, c.Kube)
	if err != nil {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		return
	}
	digests := make(map[types.UID]*digest, len(pods))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxConcurrentScrapes)
	for _, p := range pods {
		if p.addr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			d, err := c.scrape(ctx, p.addr)
			if err != nil {
				return // left out of this round; its previous scrape ages out
			}
			mu.Lock()
			digests[p.uid] = d
			mu.Unlock()
		}()
	}
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[types.UID]*sample, len(pods))
	for _, p := range pods {
		s := &sample{pod: p}
		if old := c.pods[p.uid]; old != nil {
			s.prev, s.cur = old.prev, old.cur
		}
		if d := digests[p.uid]; d != nil {
			s.prev, s.cur = s.cur, d
		}
		next[p.uid] = s
	}
	c.pods, c.round, c.err = next, time.Now(), nil
}

func (c *Collector) scrape(ctx context.Context, addr string) (*digest, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", addr, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetricsBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxMetricsBytes {
		return nil, fmt.Errorf("%s: /metrics is larger than %d bytes", addr, maxMetricsBytes)
	}
	// The sample's time is the middle of the round trip: the proxy rendered its
	// counters somewhere in between.
	return parseDigest(bytes.NewReader(body), start.Add(time.Since(start)/2))
}

// snapshot returns the pods of the latest round (all namespaces when ns is "").
func (c *Collector) snapshot(ns string) ([]*sample, time.Time, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*sample, 0, len(c.pods))
	for _, s := range c.pods {
		if ns == "" || s.namespace == ns {
			out = append(out, s)
		}
	}
	return out, c.round, c.err
}

// listPods lists the running pods of every namespace with their workloads.
func listPods(ctx context.Context, kube kubernetes.Interface) ([]pod, error) {
	list, err := kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	rss, err := kube.AppsV1().ReplicaSets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing replicasets: %w", err)
	}
	rsOwner := map[string]string{}
	for i := range rss.Items {
		rsOwner[rss.Items[i].Namespace+"/"+rss.Items[i].Name] = workload.DeploymentOf(&rss.Items[i])
	}
	out := make([]pod, 0, len(list.Items))
	for i := range list.Items {
		p := &list.Items[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		sp := pod{uid: p.UID, namespace: p.Namespace, name: p.Name, workload: workload.Name(p, rsOwner)}
		var port int32
		sp.meshed, port = inject.ProxyAdminPort(p)
		if sp.meshed && p.Status.PodIP != "" {
			sp.addr = net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port)))
		}
		out = append(out, sp)
	}
	return out, nil
}
