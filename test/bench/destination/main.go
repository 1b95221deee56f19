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

// Command destination measures the destination service at the scale issue 5 sets:
// 1,000 Services with 10,000 endpoints (EndpointSlices targeting meshed Pods) in a real
// API server, and 5,000 subscribed streams from simulated proxies.
//
// The service runs in a child process (this binary with --serve): the same code as in
// weft-controller (a controller-runtime manager with destination.AddToManager, its
// informers, the compiler and the gRPC server), and nothing else, so the child's RSS
// and CPU time are the service's. The parent runs the API server (envtest) and the
// simulated proxies, which share a few gRPC connections, as the proxies of one node
// would not, but the server's cost per stream is the same.
//
// Latency is measured from just before the API write of an EndpointSlice change to
// the moment the last of the destination's subscribers has received the update.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

const (
	controlNS  = meshdefaults.ControlPlaneNamespace
	benchNS    = "bench"
	serverName = "weft-destination.weft-system.svc"
)

type config struct {
	services, endpointsPerService, subscriptions, conns, changes int
	routeChanges                                                 int
	memoryLimitMB                                                int
	profileDir                                                   string
	out                                                          string
}

func main() {
	var cfg config
	serve := flag.Bool("serve", false, "Run the destination service (the child process).")
	kubeconfig := flag.String("serve-kubeconfig", "", "With --serve: the API server's kubeconfig.")
	flag.IntVar(&cfg.services, "services", 1000, "Services.")
	flag.IntVar(&cfg.endpointsPerService, "endpoints-per-service", 10, "Endpoints (and meshed Pods) per Service.")
	flag.IntVar(&cfg.subscriptions, "subscriptions", 5000, "Subscribed streams, spread evenly over the Services.")
	flag.IntVar(&cfg.conns, "conns", 8, "gRPC connections the streams share.")
	flag.IntVar(&cfg.changes, "changes", 200, "EndpointSlice changes to time (p99 of fewer than 100 is their maximum).")
	flag.IntVar(&cfg.routeChanges, "route-changes", 20, "ServiceProfile writes to time (each recompiles every destination).")
	flag.StringVar(&cfg.profileDir, "profile-dir", "", "When set, save the service's heap profile after the subscriptions and a CPU profile of the changes there.")
	flag.IntVar(&cfg.memoryLimitMB, "memory-limit-mb", 0, "When set, run the service as weft-controller runs in a container with this memory limit (MiB): with a Go memory limit of 90% of it.")
	flag.StringVar(&cfg.out, "out", "bench/results/destination.json", "Where to write the results.")
	flag.Parse()
	var err error
	if *serve {
		err = runServer(*kubeconfig)
	} else {
		err = run(cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-destination:", err)
		os.Exit(1)
	}
}

// Results is what bench/results/destination.json holds.
type Results struct {
	Services      int `json:"services"`
	Endpoints     int `json:"endpoints"`
	Subscriptions int `json:"subscriptions"`
	Connections   int `json:"connections"`
	// MemoryLimitMB is the container memory limit the service ran as if under
	// (--memory-limit-mb; 0: none, the Go collector's default pacing).
	MemoryLimitMB int `json:"memory_limit_mb,omitempty"`
	Changes       int `json:"changes"`

	// Time from an EndpointSlice write to its last subscriber receiving the update.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// The same for ServiceProfile creations (the path of route resources, whose
	// destinations may gain backends).
	RouteChanges int     `json:"route_changes"`
	RouteP50Ms   float64 `json:"route_p50_ms"`
	RouteP99Ms   float64 `json:"route_p99_ms"`

	// BytesPerSubscription is the growth of the server's Go heap in use and goroutine
	// stacks (after two GCs, which also empty sync.Pool caches) from before the
	// subscriptions to after, divided by their number.
	BytesPerSubscription float64 `json:"bytes_per_subscription"`
	// RSSBytesPerSubscription is the growth of the process's resident set from
	// before the subscriptions to the end of the run (streams still open);
	// RSSBurstBytesPerSubscription to just after they all got their snapshot, which
	// still holds the garbage of that burst (the Go heap grows to twice its live size
	// before a collection).
	RSSBytesPerSubscription      float64 `json:"rss_bytes_per_subscription"`
	RSSBurstBytesPerSubscription float64 `json:"rss_burst_bytes_per_subscription"`
	// ControllerRSSMB is the service process's peak resident set (VmHWM) over the
	// run; ControllerEndRSSMB its resident set at the end (streams still open).
	ControllerRSSMB    float64 `json:"controller_rss_mb"`
	ControllerEndRSSMB float64 `json:"controller_end_rss_mb"`
	// RSSSyncedMB is the resident set once the informers synced, before subscriptions.
	RSSSyncedMB float64 `json:"rss_synced_mb"`
	// CPUSeconds is the service process's user+system CPU time over the whole run;
	// the phases split it.
	CPUSeconds       float64 `json:"cpu_s"`
	CPUSyncSeconds   float64 `json:"cpu_sync_s"`
	CPUSubSeconds    float64 `json:"cpu_subscribe_s"`
	CPUChangeSeconds float64 `json:"cpu_changes_s"`
	CPURouteSeconds  float64 `json:"cpu_route_changes_s"`
	SubscribeSeconds float64 `json:"subscribe_s"`
	SyncSeconds      float64 `json:"sync_s"`
	ShutdownSeconds  float64 `json:"shutdown_s"`
	Goroutines       int     `json:"server_goroutines"`
	GoVersion        string  `json:"go_version,omitempty"`
	// ServerP50Ms and ServerP99Ms are the service's own part of the latency of every
	// change of the run (informer event to streams), as upper bounds of the buckets
	// (powers of two) of weft_destination_change_latency_seconds.
	ServerP50Ms float64 `json:"server_p50_ms"`
	ServerP99Ms float64 `json:"server_p99_ms"`
	// LoadAvg is the machine's 1-minute load average at the start and the end of the
	// timed changes: latencies on a machine shared with other work include waiting for
	// a CPU.
	LoadAvgStart float64 `json:"load_avg_start"`
	LoadAvgEnd   float64 `json:"load_avg_end"`
	CPUs         int     `json:"cpus"`
	Date         string  `json:"date"`
}

func run(cfg config) error {
	if cfg.services <= 0 || cfg.subscriptions <= 0 || cfg.conns <= 0 {
		return errors.New("--services, --subscriptions and --conns must be positive")
	}
	if err := checkIdentityLimits(cfg); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := Results{Services: cfg.services, Endpoints: cfg.services * cfg.endpointsPerService,
		Subscriptions: cfg.subscriptions, Connections: cfg.conns, Changes: cfg.changes, MemoryLimitMB: cfg.memoryLimitMB,
		Date: time.Now().UTC().Format(time.RFC3339)}

	env, err := testenv.New()
	if err != nil {
		return err
	}
	// envtest's default Service range (a /24) holds too few cluster IPs.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16")
	restCfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the API server: %w", err)
	}
	defer func() { _ = env.Stop() }()
	restCfg.QPS, restCfg.Burst = -1, 0
	c, err := client.New(restCfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		return err
	}
	pki, err := desttest.NewPKI(meshdefaults.TrustDomain)
	if err != nil {
		return err
	}
	for _, ns := range []string{controlNS, benchNS} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	if err := pki.Install(ctx, c, controlNS); err != nil {
		return err
	}
	start := time.Now()
	slicesByService, err := populate(ctx, c, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("created %d Services, %d Pods and %d EndpointSlices in %v\n", cfg.services,
		cfg.services*cfg.endpointsPerService, len(slicesByService), time.Since(start).Round(time.Millisecond))

	// The service, in a child process.
	dir, err := os.MkdirTemp("", "bench-destination-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kc := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(restCfg, kc); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, "--serve", "--serve-kubeconfig", kc)
	child.Stderr = os.Stderr
	// With the goroutine stacks weft-controller runs with (config/manager's GODEBUG).
	child.Env = append(os.Environ(), "GODEBUG=adaptivestackstart=0")
	if cfg.memoryLimitMB > 0 {
		// What weft-controller sets from its container's limit (memoryLimit there).
		child.Env = append(child.Env, fmt.Sprintf("GOMEMLIMIT=%dMiB", cfg.memoryLimitMB*9/10))
	}
	// The service must not outlive the benchmark, whatever happens to it.
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	syncStart := time.Now()
	if err := child.Start(); err != nil {
		return err
	}
	childDone := make(chan error, 1)
	go func() { childDone <- child.Wait() }()
	defer func() {
		if child.ProcessState == nil {
			_ = child.Process.Kill()
		}
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var addr, statsAddr string
	for addr == "" || statsAddr == "" || res.SyncSeconds == 0 {
		select {
		case l, ok := <-lines:
			if !ok {
				return fmt.Errorf("the service exited: %w", <-childDone)
			}
			switch f := strings.Fields(l); {
			case len(f) == 2 && f[0] == "LISTEN":
				addr = f[1]
			case len(f) == 2 && f[0] == "STATS":
				statsAddr = f[1]
			case len(f) == 1 && f[0] == "SYNCED":
				res.SyncSeconds = time.Since(syncStart).Seconds()
			}
		case <-time.After(2 * time.Minute):
			return errors.New("the service did not sync within 2 minutes")
		}
	}
	pid := child.Process.Pid
	synced, err := stats(statsAddr)
	if err != nil {
		return err
	}
	cpuSynced, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	res.CPUSyncSeconds = cpuSynced
	res.RSSSyncedMB = mb(synced.RSS)
	res.GoVersion = synced.GoVersion
	fmt.Printf("the service synced in %.2fs: RSS %.1f MB, heap %.1f MB, CPU %.2fs\n",
		res.SyncSeconds, mb(synced.RSS), mb(synced.HeapInuse), cpuSynced)

	// The simulated proxies.
	subStart := time.Now()
	subs, closeConns, err := subscribeAll(ctx, pki, addr, cfg)
	if err != nil {
		return err
	}
	defer closeConns()
	res.SubscribeSeconds = time.Since(subStart).Seconds()
	// Let the last compilations and sends finish before measuring.
	time.Sleep(time.Second)
	subscribed, err := stats(statsAddr)
	if err != nil {
		return err
	}
	cpuSubscribed, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	res.CPUSubSeconds = cpuSubscribed - cpuSynced
	res.BytesPerSubscription = float64(int64(subscribed.HeapInuse+subscribed.StackInuse)-int64(synced.HeapInuse+synced.StackInuse)) / float64(cfg.subscriptions)
	res.RSSBurstBytesPerSubscription = float64(int64(subscribed.RSS)-int64(synced.RSS)) / float64(cfg.subscriptions)
	fmt.Printf("%d subscriptions got their snapshots in %.2fs: RSS %.1f MB, heap %.1f MB, stacks %.1f MB, %d goroutines; %.0f B/subscription (heap+stacks), %.0f B (RSS)\n",
		cfg.subscriptions, res.SubscribeSeconds, mb(subscribed.RSS), mb(subscribed.HeapInuse), mb(subscribed.StackInuse),
		subscribed.Goroutines, res.BytesPerSubscription, res.RSSBurstBytesPerSubscription)

	var cpuProf chan error
	if cfg.profileDir != "" {
		if err := fetch(statsAddr, "/debug/pprof/heap", filepath.Join(cfg.profileDir, "destination-heap.pprof")); err != nil {
			return err
		}
		cpuProf = make(chan error, 1)
		go func() {
			cpuProf <- fetch(statsAddr, "/debug/pprof/profile?seconds=5", filepath.Join(cfg.profileDir, "destination-cpu.pprof"))
		}()
	}

	// The changes, one at a time.
	res.LoadAvgStart, res.CPUs = loadAvg(), runtime.NumCPU()
	lat, err := timeChanges(ctx, c, cfg, slicesByService, subs)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	res.P50Ms, res.P99Ms, res.MaxMs = ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), ms(lat[len(lat)-1])
	cpuEndpoints, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	res.CPUChangeSeconds = cpuEndpoints - cpuSubscribed
	if cfg.routeChanges > 0 {
		rlat, err := timeRouteChanges(ctx, c, cfg, subs)
		if err != nil {
			return err
		}
		slices.Sort(rlat)
		res.RouteChanges = len(rlat)
		res.RouteP50Ms, res.RouteP99Ms = ms(percentile(rlat, 0.50)), ms(percentile(rlat, 0.99))
	}
	end, err := stats(statsAddr)
	if err != nil {
		return err
	}
	res.LoadAvgEnd = loadAvg()
	cpuEnd, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	res.CPURouteSeconds = cpuEnd - cpuEndpoints
	res.CPUSeconds = cpuEnd
	res.ControllerEndRSSMB = mb(end.RSS)
	res.RSSBytesPerSubscription = float64(int64(end.RSS)-int64(synced.RSS)) / float64(cfg.subscriptions)
	res.ControllerRSSMB = mb(end.PeakRSS)
	res.Goroutines = end.Goroutines
	res.ServerP50Ms, res.ServerP99Ms = end.ChangeP50Ms, end.ChangeP99Ms

	if cpuProf != nil {
		if err := <-cpuProf; err != nil {
			return fmt.Errorf("CPU profile: %w", err)
		}
	}

	// Shutdown: SIGTERM ends every stream and stops within the grace period.
	stopAt := time.Now()
	_ = child.Process.Signal(os.Interrupt)
	select {
	case err := <-childDone:
		res.ShutdownSeconds = time.Since(stopAt).Seconds()
		if err != nil {
			fmt.Printf("the service exited with %v\n", err)
		}
	case <-time.After(20 * time.Second):
		return errors.New("the service did not stop within 20s of SIGINT")
	}
	ended := 0
	for _, s := range subs {
		select {
		case <-s.ended:
			ended++
		case <-time.After(time.Second):
		}
	}

	fmt.Printf("\nEndpointSlice change -> last subscriber: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d changes, %d subscribers each)\n",
		res.P50Ms, res.P99Ms, res.MaxMs, len(lat), cfg.subscriptions/cfg.services)
	fmt.Printf("of which in the service (informer event -> streams, bucket upper bounds): p50 <= %.1f ms, p99 <= %.1f ms\n", res.ServerP50Ms, res.ServerP99Ms)
	fmt.Printf("ServiceProfile created -> last subscriber: p50 %.1f ms, p99 %.1f ms (%d writes)\n",
		res.RouteP50Ms, res.RouteP99Ms, res.RouteChanges)
	fmt.Printf("service process: peak RSS %.1f MB (%.1f MB at the end), CPU %.2fs (sync %.2fs, subscribe %.2fs, endpoint changes %.2fs, route changes %.2fs)\n",
		res.ControllerRSSMB, res.ControllerEndRSSMB, res.CPUSeconds, res.CPUSyncSeconds, res.CPUSubSeconds, res.CPUChangeSeconds, res.CPURouteSeconds)
	fmt.Printf("per subscription: %.0f B heap+stacks; RSS growth %.0f B at the end, %.0f B right after the burst\n",
		res.BytesPerSubscription, res.RSSBytesPerSubscription, res.RSSBurstBytesPerSubscription)
	fmt.Printf("shutdown in %.2fs; %d of %d streams ended\n", res.ShutdownSeconds, ended, len(subs))
	fmt.Printf("machine: %d CPUs, load average %.1f at the start of the changes, %.1f at the end\n", res.CPUs, res.LoadAvgStart, res.LoadAvgEnd)
	fmt.Printf("targets: p99 <= 100 ms %s, <= 20 KB/subscription (heap+stacks) %s, peak RSS <= 300 MB %s\n",
		verdict(res.P99Ms <= 100), verdict(res.BytesPerSubscription <= 20<<10), verdict(res.ControllerRSSMB <= 300))

	// CPU times are in hundredths of a second; differences of them should print so.
	for _, f := range []*float64{&res.CPUSeconds, &res.CPUSyncSeconds, &res.CPUSubSeconds, &res.CPUChangeSeconds, &res.CPURouteSeconds} {
		*f = math.Round(*f*100) / 100
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(cfg.out, append(b, '\n'), 0o644)
}

// checkIdentityLimits refuses a run the service's per-identity limits would cut short:
// each connection is a client identity of its own, and subscription i goes over
// connection i%conns to Service i%services. Found after populating (14 minutes at
// 10,000 Services), a refused subscription would waste the run.
func checkIdentityLimits(cfg config) error {
	streams := (cfg.subscriptions + cfg.conns - 1) / cfg.conns
	targets := min(streams, cfg.services/gcd(cfg.services, cfg.conns))
	if streams > destination.DefaultMaxStreamsPerIdentity || targets > destination.DefaultMaxTargetsPerIdentity {
		return fmt.Errorf("each of the %d connections (client identities) would hold %d streams to %d Services, over the service's limits of %d streams and %d destinations per identity: raise --conns",
			cfg.conns, streams, targets, destination.DefaultMaxStreamsPerIdentity, destination.DefaultMaxTargetsPerIdentity)
	}
	return nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// populate creates the Services, their meshed Pods and one EndpointSlice per Service.
func populate(ctx context.Context, c client.Client, cfg config) ([]*discoveryv1.EndpointSlice, error) {
	out := make([]*discoveryv1.EndpointSlice, cfg.services)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range cfg.services {
		g.Go(func() error {
			name := fmt.Sprintf("svc-%04d", i)
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
			}
			if err := c.Create(ctx, svc); err != nil {
				return fmt.Errorf("creating Service %s: %w", name, err)
			}
			es := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: benchNS, Name: name + "-a", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
			}
			for j := range cfg.endpointsPerService {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: fmt.Sprintf("%s-%d", name, j), Labels: map[string]string{"app": name}},
					Spec: corev1.PodSpec{
						ServiceAccountName: name,
						InitContainers:     []corev1.Container{{Name: "weft-proxy", Image: "weft-proxy:dev", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
						Containers:         []corev1.Container{{Name: "app", Image: "app:dev"}},
					},
				}
				if err := c.Create(ctx, pod); err != nil {
					return fmt.Errorf("creating Pod %s: %w", pod.Name, err)
				}
				es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
					Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 1+i/250, i%250, j)},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
					Zone:       ptr.To("zone-a"),
					TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: benchNS, Name: pod.Name},
				})
			}
			if err := c.Create(ctx, es); err != nil {
				return fmt.Errorf("creating EndpointSlice %s: %w", es.Name, err)
			}
			out[i] = es
			return nil
		})
	}
	return out, g.Wait()
}

// sub is one simulated proxy's subscription.
type sub struct {
	service int
	// armed, when set, makes the reader report its next message's arrival time.
	armed   atomic.Bool
	arrived chan time.Time
	first   chan struct{}
	ended   chan struct{}
	msgs    atomic.Int64
}

func subscribeAll(ctx context.Context, pki *desttest.PKI, addr string, cfg config) ([]*sub, func(), error) {
	var clients []apigrpc.DestinationClient
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}
	for i := range cfg.conns {
		cert, err := pki.WorkloadCert(benchNS, fmt.Sprintf("client-%d", i))
		if err != nil {
			return nil, closeAll, err
		}
		cc, err := desttest.Dial(addr, pki.ClientTLS(serverName, &cert))
		if err != nil {
			return nil, closeAll, err
		}
		closers = append(closers, cc)
		clients = append(clients, apigrpc.NewDestinationClient(cc))
	}
	subs := make([]*sub, cfg.subscriptions)
	for i := range subs {
		s := &sub{service: i % cfg.services, arrived: make(chan time.Time, 1), first: make(chan struct{}), ended: make(chan struct{})}
		subs[i] = s
		req := &api.GetDestination{
			Target:           &api.GetDestination_Authority{Authority: fmt.Sprintf("svc-%04d.%s.svc.cluster.local:80", s.service, benchNS)},
			ContextNamespace: benchNS,
		}
		st, err := clients[i%len(clients)].Get(ctx, req)
		if err != nil {
			return nil, closeAll, fmt.Errorf("subscription %d: %w", i, err)
		}
		go func() {
			defer close(s.ended)
			for {
				m, err := st.Recv()
				if err != nil {
					return
				}
				at := time.Now()
				if s.msgs.Add(1) == 1 {
					if m.GetSnapshot() == nil {
						fmt.Fprintf(os.Stderr, "subscription to svc-%04d: the first message is not a snapshot: %v\n", s.service, m)
					}
					close(s.first)
					continue
				}
				if s.armed.CompareAndSwap(true, false) {
					s.arrived <- at
				}
			}
		}()
	}
	deadline := time.After(2 * time.Minute)
	for i, s := range subs {
		select {
		case <-s.first:
		case <-s.ended:
			return nil, closeAll, fmt.Errorf("subscription %d ended before its snapshot", i)
		case <-deadline:
			return nil, closeAll, fmt.Errorf("subscription %d got no snapshot within 2 minutes", i)
		}
	}
	return subs, closeAll, nil
}

// timeChanges toggles the readiness of one endpoint of a different Service each time
// and measures until every subscriber of that Service has received the delta.
func timeChanges(ctx context.Context, c client.Client, cfg config, slices []*discoveryv1.EndpointSlice, subs []*sub) ([]time.Duration, error) {
	return timeEach(cfg.changes, cfg.services, subs, func(k, i int) error {
		es := slices[i]
		ready := es.Endpoints[0].Conditions.Ready
		es.Endpoints[0].Conditions.Ready = ptr.To(ready == nil || !*ready)
		if err := c.Update(ctx, es); err != nil {
			return fmt.Errorf("updating EndpointSlice %s: %w", es.Name, err)
		}
		return nil
	})
}

// timeRouteChanges creates a ServiceProfile for a different Service each time: the
// path of route resources, which recompiles the Service's destinations with the
// endpoints of every Service a route resource names (as their backends may change).
func timeRouteChanges(ctx context.Context, c client.Client, cfg config, subs []*sub) ([]time.Duration, error) {
	return timeEach(cfg.routeChanges, cfg.services, subs, func(k, i int) error {
		sp := &meshv1alpha1.ServiceProfile{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: fmt.Sprintf("svc-%04d.%s.svc.cluster.local", i, benchNS)},
			Spec: meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{{
				Name: fmt.Sprintf("route-%d", k), Condition: meshv1alpha1.RequestMatch{Method: "GET"},
			}}},
		}
		if err := c.Create(ctx, sp); err != nil {
			return fmt.Errorf("creating ServiceProfile %s: %w", sp.Name, err)
		}
		return nil
	})
}

// timeEach makes n changes, the k-th to Service i, and measures from just before each
// write until every subscriber of the Service has received a message.
func timeEach(n, services int, subs []*sub, change func(k, i int) error) ([]time.Duration, error) {
	bySvc := map[int][]*sub{}
	for _, s := range subs {
		bySvc[s.service] = append(bySvc[s.service], s)
	}
	var lat []time.Duration
	for k := range n {
		i := (k * 7919) % services // spread over the Services
		for _, s := range bySvc[i] {
			// Drop anything earlier, then wait for the next message.
			select {
			case <-s.arrived:
			default:
			}
			s.armed.Store(true)
		}
		t0 := time.Now()
		if err := change(k, i); err != nil {
			return nil, err
		}
		var last time.Time
		for _, s := range bySvc[i] {
			select {
			case at := <-s.arrived:
				if at.After(last) {
					last = at
				}
			case <-time.After(10 * time.Second):
				return nil, fmt.Errorf("change %d to svc-%04d: a subscriber got nothing within 10s", k, i)
			}
		}
		lat = append(lat, last.Sub(t0))
		time.Sleep(20 * time.Millisecond)
	}
	return lat, nil
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["bench"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	kc.CurrentContext = "bench"
	return clientcmd.WriteToFile(*kc, path)
}

// serverStats is what the child reports at /stats, after two GCs.
type serverStats struct {
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Goroutines int    `json:"goroutines"`
	RSS        uint64 `json:"rss"`
	PeakRSS    uint64 `json:"peak_rss"`
	GoVersion  string `json:"go_version"`
	// The service's own share of the latency: from the informer event to the
	// streams, as bucket upper bounds of weft_destination_change_latency_seconds.
	ChangeCount uint64  `json:"change_count"`
	ChangeP50Ms float64 `json:"change_p50_ms"`
	ChangeP99Ms float64 `json:"change_p99_ms"`
}

func stats(addr string) (serverStats, error) {
	var s serverStats
	resp, err := http.Get("http://" + addr + "/stats")
	if err != nil {
		return s, fmt.Errorf("reading the service's stats: %w", err)
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// fetch saves an HTTP GET of the service's stats server to a file.
func fetch(addr, path, file string) error {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", path, err)
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// cpuSeconds reads a process's user+system time from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields start after its closing parenthesis.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	// utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	// USER_HZ is 100 on Linux: hundredths of a second.
	return (ut + st) / 100, nil
}

// procStatus reads VmRSS and VmHWM (bytes) from /proc/self/status.
func procStatus() (rss, peak uint64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = n << 10
		case "VmHWM:":
			peak = n << 10
		}
	}
	return rss, peak
}
