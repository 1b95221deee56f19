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

package destination

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

func heapMiB() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

// TestClientLimits: one client identity opening 100,000 streams, over many connections,
// for distinct in-cluster names and for names outside the cluster, is capped with
// ResourceExhausted; the server keeps state for at most the cap, none for names
// outside the cluster; and the heap (server and clients both, in this process) stays
// bounded.
func TestClientLimits(t *testing.T) {
	pki, creds := newTestCredentials(t)
	srv := NewServer(ServerOptions{}) // the default limits
	srv.MarkSynced()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis, creds.serverOption(), 2*time.Second) }()
	defer func() {
		cancel()
		<-served
	}()

	cert, err := pki.WorkloadCert("shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	// Many connections, as from many proxies of one ServiceAccount: the limits are per
	// identity, not per connection.
	const conns = 24
	var clients []apigrpc.DestinationClient
	for range conns {
		cc, err := desttest.Dial(lis.Addr().String(), pki.ClientTLS(serverName, &cert))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		clients = append(clients, apigrpc.NewDestinationClient(cc))
	}
	base := heapMiB()

	// attempt opens n streams for authority(i) with 32 workers and keeps those that
	// get a first message open; it returns how many were accepted and refused, and
	// the function that closes the accepted ones.
	attempt := func(t *testing.T, n int, authority func(int) string) (accepted, refused int64, closeAll func()) {
		t.Helper()
		var (
			mu      sync.Mutex
			cancels []context.CancelFunc
			next    atomic.Int64
			wg      sync.WaitGroup
			failed  atomic.Value
		)
		for w := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n || failed.Load() != nil {
						return
					}
					// The deadline bounds a stream that hangs; it must outlast the whole
					// attempt, or the first accepted streams end (freeing their slots)
					// while later ones are counted: on a loaded 2-core machine the 100,000
					// attempts took 78 s and let 17,784 in against a limit of 10,000.
					sctx, scancel := context.WithTimeout(context.Background(), 10*time.Minute)
					st, err := clients[(i+w)%conns].Get(sctx, auth(authority(i)))
					if err == nil {
						_, err = st.Recv()
					}
					switch status.Code(err) {
					case codes.OK:
						atomic.AddInt64(&accepted, 1)
						mu.Lock()
						cancels = append(cancels, scancel)
						mu.Unlock()
						continue
					case codes.ResourceExhausted:
						if msg := status.Convert(err).Message(); !strings.Contains(msg, "the most one identity may") {
							failed.Store(fmt.Errorf("ResourceExhausted without a clear message: %q", msg))
						}
						atomic.AddInt64(&refused, 1)
					default:
						failed.Store(fmt.Errorf("stream %d: %v", i, err))
					}
					scancel()
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			t.Fatal(err)
		}
		return accepted, refused, func() {
			for _, c := range cancels {
				c()
			}
		}
	}
	waitUsage := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			srv.usageMu.Lock()
			n := len(srv.usage)
			srv.usageMu.Unlock()
			if n == 0 && srv.entryCount() == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the streams closed the server still holds %d identities and %d destinations", n, srv.entryCount())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("100,000 distinct in-cluster names: at most 1,000 destinations of state", func(t *testing.T) {
		limited := testutil.ToFloat64(LimitExceededTotal.WithLabelValues(LimitTargetsPerIdentity))
		start := time.Now()
		accepted, refused, closeAll := attempt(t, 100_000, func(i int) string { return fmt.Sprintf("s%d.shop:80", i) })
		held := heapMiB()
		entries := srv.entryCount()
		closeAll()
		t.Logf("100,000 streams in %v: %d accepted, %d ResourceExhausted, %d destinations kept; heap %.1f MiB before, %.1f MiB with the accepted streams open (server and clients)",
			time.Since(start).Round(time.Millisecond), accepted, refused, entries, base, held)
		if accepted != DefaultMaxTargetsPerIdentity || refused != 100_000-DefaultMaxTargetsPerIdentity {
			t.Errorf("accepted %d, refused %d; want %d accepted", accepted, refused, DefaultMaxTargetsPerIdentity)
		}
		if entries > DefaultMaxTargetsPerIdentity {
			t.Errorf("the server keeps %d destinations, cap %d", entries, DefaultMaxTargetsPerIdentity)
		}
		if got := testutil.ToFloat64(LimitExceededTotal.WithLabelValues(LimitTargetsPerIdentity)) - limited; got != float64(refused) {
			t.Errorf("weft_destination_limit_exceeded_total{limit=targets_per_identity} grew by %v, want %d", got, refused)
		}
		if held-base > 64 {
			t.Errorf("the heap grew by %.1f MiB, want under 64 MiB", held-base)
		}
		waitUsage(t)
	})

	t.Run("100,000 names outside the cluster: no state, streams capped", func(t *testing.T) {
		limited := testutil.ToFloat64(LimitExceededTotal.WithLabelValues(LimitStreamsPerIdentity))
		start := time.Now()
		accepted, refused, closeAll := attempt(t, 100_000, func(i int) string { return fmt.Sprintf("h%d.example.com:443", i) })
		held := heapMiB()
		entries := srv.entryCount()
		closeAll()
		t.Logf("100,000 streams in %v: %d accepted, %d ResourceExhausted, %d destinations kept; heap %.1f MiB before, %.1f MiB with the accepted streams open (server and clients)",
			time.Since(start).Round(time.Millisecond), accepted, refused, entries, base, held)
		if accepted != DefaultMaxStreamsPerIdentity || refused != 100_000-DefaultMaxStreamsPerIdentity {
			t.Errorf("accepted %d, refused %d; want %d accepted", accepted, refused, DefaultMaxStreamsPerIdentity)
		}
		if entries != 0 {
			t.Errorf("the server keeps %d destinations for names outside the cluster, want 0", entries)
		}
		if got := testutil.ToFloat64(LimitExceededTotal.WithLabelValues(LimitStreamsPerIdentity)) - limited; got != float64(refused) {
			t.Errorf("weft_destination_limit_exceeded_total{limit=streams_per_identity} grew by %v, want %d", got, refused)
		}
		if held-base > 160 {
			t.Errorf("the heap grew by %.1f MiB, want under 160 MiB", held-base)
		}
		waitUsage(t)
	})
}
