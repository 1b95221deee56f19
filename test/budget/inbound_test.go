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

package budget

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// inboundSA is the ServiceAccount of every pod when the child serves inbound policy.
const inboundSA = "web"

// watchInbound opens one inbound policy Watch per pod of the child (subServices x
// subEndpoints), as each pod's proxy does, over subConns connections of the pods'
// identity, and waits for each stream's first policy. The streams stay open until
// the test ends.
func watchInbound(t *testing.T, pki *desttest.PKI, addr string) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	watchdog := time.AfterFunc(90*time.Second, cancel)
	defer watchdog.Stop()
	cert, err := pki.WorkloadCert(subNS, inboundSA)
	if err != nil {
		t.Fatal(err)
	}
	var clients []apigrpc.InboundPoliciesClient
	for range subConns {
		cc, err := desttest.Dial(addr, pki.ClientTLS(subServerName, &cert))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		clients = append(clients, apigrpc.NewInboundPoliciesClient(cc))
	}
	const watches = subServices * subEndpoints
	first := make(chan error, watches)
	for i := range watches {
		pod := fmt.Sprintf("svc-%04d-%d", i/subEndpoints, i%subEndpoints)
		st, err := clients[i%subConns].Watch(ctx, &api.WatchInbound{Namespace: subNS, Pod: pod})
		if err != nil {
			t.Fatalf("watch of %s: %v", pod, err)
		}
		go func() {
			_, err := st.Recv()
			first <- err
			for err == nil {
				_, err = st.Recv()
			}
		}()
	}
	deadline := time.After(60 * time.Second)
	for i := range watches {
		select {
		case err := <-first:
			if err != nil {
				t.Fatalf("a watch: %v", err)
			}
		case <-deadline:
			t.Fatalf("%d of %d watches got no policy within 60s", watches-i, watches)
		}
	}
	return watches
}

// TestInboundBytesPerWatch is the budget on the inbound policy service's memory per
// meshed pod: each pod's proxy holds one Watch for its life. 2,000 pods, one Watch
// each on 8 mTLS connections, the destination and inbound policy services alone in a
// child process; the figure includes the pod's compiled policy, kept while watched.
func TestInboundBytesPerWatch(t *testing.T) {
	pki, err := desttest.NewPKI("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	c := startDestinationChild(t, pki, inboundEnv+"=1")
	before := c.stats(t)
	n := watchInbound(t, pki, c.addr)
	time.Sleep(200 * time.Millisecond) // as bytesPerSubscription: let the last sends return
	after := c.stats(t)
	per := float64(int64(after.HeapInuse+after.StackInuse)-int64(before.HeapInuse+before.StackInuse)) / float64(n)
	t.Logf("heap %d -> %d B, stacks %d -> %d B (%.0f B per watch), goroutines %d -> %d: %.0f B per watch",
		before.HeapInuse, after.HeapInuse, before.StackInuse, after.StackInuse,
		float64(int64(after.StackInuse)-int64(before.StackInuse))/float64(n), before.Goroutines, after.Goroutines, per)
	enforce(t, "inbound_bytes_per_watch", "B",
		fmt.Sprintf("growth of the destination and inbound policy services' Go heap in use plus goroutine stacks (after two collections) per inbound policy Watch: %d pods watched once each, %d mTLS connections, the services alone in a child process fed their objects directly", n, subConns),
		per)
}
