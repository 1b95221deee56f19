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

// Package localmesh runs Weft on one machine without a cluster: a real kube-apiserver
// and etcd, the real cert-manager controllers, weft-controller's reconcilers and
// identity and destination services in-process, and weft-proxy processes in mesh mode
// on loopback. The integration tests (test/integration) and `make demo-local`
// (hack/demo) use it. It lives under test/, not internal/, because it assembles the
// top-level consumers (controllers) into a control plane: internal/ packages are what
// those consumers are built from, and never import them.
package localmesh

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/freeport"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/testenv/certmanager"
)

// Namespace is the control-plane namespace of a local mesh.
const Namespace = "weft-system"

// ControlPlane is a running API server with cert-manager and weft-controller's parts.
type ControlPlane struct {
	Config       *rest.Config
	Client       client.Client
	Kube         kubernetes.Interface
	IdentityAddr string
	// DestinationAddr is the destination service's address. It stays the same
	// across StopDestination and StartDestination.
	DestinationAddr string

	ctx      context.Context
	log      logr.Logger
	stop     func() error
	stopOnce sync.Once
	stopErr  error
	destMu   sync.Mutex
	// destStop stops the running destination service; nil when it is stopped.
	destStop func() error
}

// StartControlPlane starts the API server (building it first if it is not cached),
// cert-manager, the reconcilers and the identity and destination services, wired as in
// weft-controller.
func StartControlPlane(ctx context.Context, log logr.Logger) (*ControlPlane, error) {
	env, err := testenv.New()
	if err != nil {
		return nil, err
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the API server: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	cp := &ControlPlane{Config: cfg, ctx: ctx, log: log}
	cp.stop = func() error {
		destErr := cp.StopDestination()
		cancel()
		var mgrErr error
		if done != nil {
			mgrErr = <-done
		}
		return errors.Join(destErr, mgrErr, env.Stop())
	}
	fail := func(err error) (*ControlPlane, error) {
		done = nil
		_ = cp.stop()
		return nil, err
	}

	if cp.Client, err = client.New(cfg, client.Options{Scheme: testenv.Scheme}); err != nil {
		return fail(err)
	}
	if cp.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return fail(err)
	}
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return fail(err)
	}
	if err := certmanager.Start(ctx, certmanager.Config{RESTConfig: cfg, ClusterResourceNamespace: Namespace, Log: log.WithName("cert-manager")}); err != nil {
		return fail(fmt.Errorf("starting cert-manager: %w", err))
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  testenv.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Logger:  log.WithName("weft-controller"),
		// Tests start several managers with the same controllers in one process.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fail(err)
	}
	if err := controllers.AddToManager(mgr, controllers.Options{Namespace: Namespace}); err != nil {
		return fail(err)
	}
	if cp.IdentityAddr, err = FreeAddr(); err != nil {
		return fail(err)
	}
	// Every proxy of a local mesh calls from 127.0.0.1, where a cluster gives each pod
	// its own IP: the per-IP rate would make them queue behind each other.
	idLimits := identity.Limits{PeerRate: 1000, PeerBurst: 1000}
	if err := identity.AddToManager(mgr, identity.Options{Namespace: Namespace, Addr: cp.IdentityAddr, Limits: idLimits}); err != nil {
		return fail(err)
	}
	go func() { done <- mgr.Start(ctx) }()
	// From here on the manager runs: stopping waits for it.
	failStarted := func(err error) (*ControlPlane, error) {
		_ = cp.Stop()
		return nil, err
	}
	if cp.DestinationAddr, err = FreeAddr(); err != nil {
		return failStarted(err)
	}
	if err := cp.StartDestination(); err != nil {
		return failStarted(err)
	}
	return cp, nil
}

// StartDestination starts the destination service on DestinationAddr, in a manager of
// its own: weft-controller runs it in its single manager, but here tests stop and
// restart it alone, as when a controller replica is restarted or replaced, while the
// identity service and the reconcilers keep running.
func (cp *ControlPlane) StartDestination() error {
	cp.destMu.Lock()
	defer cp.destMu.Unlock()
	if cp.destStop != nil {
		return errors.New("the destination service is already running")
	}
	mgr, err := ctrl.NewManager(cp.Config, ctrl.Options{
		Scheme:     testenv.Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Logger:     cp.log.WithName("weft-controller"),
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return err
	}
	listening := make(chan struct{})
	var once sync.Once
	if err := destination.AddToManager(mgr, destination.Options{Namespace: Namespace, Addr: cp.DestinationAddr,
		OnListen: func(net.Addr) { once.Do(func() { close(listening) }) }}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(cp.ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	select {
	case <-listening:
	case err := <-done:
		cancel()
		return fmt.Errorf("starting the destination service: %w", err)
	}
	cp.destStop = func() error {
		cancel()
		return <-done
	}
	return nil
}

// StopDestination stops the destination service (closing every proxy's stream) and
// waits until it has stopped. It does nothing when the service is not running.
func (cp *ControlPlane) StopDestination() error {
	cp.destMu.Lock()
	defer cp.destMu.Unlock()
	if cp.destStop == nil {
		return nil
	}
	err := cp.destStop()
	cp.destStop = nil
	return err
}

// Stop stops the destination service, the manager, cert-manager and the API server.
// Only the first call does anything, so a test may stop the control plane early and
// still leave the usual cleanup in place.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() { cp.stopErr = cp.stop() })
	return cp.stopErr
}

// Kubeconfig renders an admin kubeconfig for the API server, for kubectl.
func (cp *ControlPlane) Kubeconfig() ([]byte, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["weft-local"] = &clientcmdapi.Cluster{Server: cp.Config.Host, CertificateAuthorityData: cp.Config.CAData}
	kc.AuthInfos["weft-local"] = &clientcmdapi.AuthInfo{ClientCertificateData: cp.Config.CertData, ClientKeyData: cp.Config.KeyData}
	kc.Contexts["weft-local"] = &clientcmdapi.Context{Cluster: "weft-local", AuthInfo: "weft-local"}
	kc.CurrentContext = "weft-local"
	return clientcmd.Write(*kc)
}

// Token requests a ServiceAccount token for the identity service's audience, as the
// injector's projected volume provides it, and writes it to a file in dir.
func (cp *ControlPlane) Token(ctx context.Context, dir, namespace, serviceAccount string) (string, error) {
	tr, err := cp.Kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{identity.Audience}, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for %s/%s: %w", namespace, serviceAccount, err)
	}
	path := filepath.Join(dir, namespace+"-"+serviceAccount+".token")
	return path, os.WriteFile(path, []byte(tr.Status.Token), 0o600)
}

// ProxyOptions configure a weft-proxy in mesh mode.
type ProxyOptions struct {
	// Binary is the weft-proxy executable (see BuildProxy).
	Binary string
	// IdentityAddr is the identity service's address; Roots and Token are files.
	IdentityAddr, Roots, Token string
	// ID is the SPIFFE ID the proxy asks for.
	ID string
	// DestinationAddr, when set, is the destination service the proxy subscribes
	// to (ControlPlane.DestinationAddr).
	DestinationAddr string
	// Config is the static configuration (docs/proxy.md); empty for none.
	Config string
	// Dir holds the configuration file.
	Dir string
	// Output receives the proxy's log.
	Output io.Writer
	// ListenAddr is the address of the inbound and outbound listeners. Default
	// 127.0.0.1; a test gives a meshed endpoint's proxy the endpoint's address
	// (the API server refuses loopback addresses in EndpointSlices).
	ListenAddr string
	// Args are more weft-proxy flags.
	Args []string
}

// Proxy is a running weft-proxy on loopback ports.
type Proxy struct {
	ID                       string
	Inbound, Outbound, Admin int
	cmd                      *exec.Cmd
}

// StartProxy runs weft-proxy in mesh mode on free loopback ports.
func StartProxy(opts ProxyOptions) (*Proxy, error) {
	p := &Proxy{ID: opts.ID}
	for _, port := range []*int{&p.Inbound, &p.Outbound, &p.Admin} {
		var err error
		if *port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	args := []string{
		"--identity-mode=mesh", "--identity-addr=" + opts.IdentityAddr, "--identity-name=" + opts.ID,
		"--identity-token=" + opts.Token, "--identity-roots=" + opts.Roots,
		"--identity-server-name=" + identity.ServiceName + "." + Namespace + ".svc",
		"--listen-addr=" + cmp.Or(opts.ListenAddr, "127.0.0.1"), "--admin-addr=127.0.0.1",
		"--inbound-port=" + strconv.Itoa(p.Inbound), "--outbound-port=" + strconv.Itoa(p.Outbound),
		"--admin-port=" + strconv.Itoa(p.Admin), "--log-format=console",
		// The apps of a local mesh listen on 127.0.0.1, which a proxy in a pod
		// never forwards to; this is a local mesh only.
		"--unsafe-loopback-apps",
	}
	if opts.DestinationAddr != "" {
		args = append(args, "--destination-addr="+opts.DestinationAddr,
			"--destination-server-name="+destination.ServiceName+"."+Namespace+".svc")
	}
	if opts.Config != "" {
		f, err := os.CreateTemp(opts.Dir, "proxy-*.yaml")
		if err != nil {
			return nil, err
		}
		if _, err := f.WriteString(opts.Config); err != nil {
			return nil, err
		}
		f.Close()
		args = append(args, "--config="+f.Name())
	}
	args = append(args, opts.Args...)
	p.cmd = exec.Command(opts.Binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = opts.Output, opts.Output
	// What the injector sets from the downward API: the pod's namespace, here the
	// namespace of the identity.
	if ns := spiffeNamespace(opts.ID); ns != "" {
		p.cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting weft-proxy: %w", err)
	}
	return p, nil
}

// spiffeNamespace returns the namespace of spiffe://<td>/ns/<ns>/sa/<sa>, or "".
func spiffeNamespace(id string) string {
	_, rest, ok := strings.Cut(id, "/ns/")
	if !ok {
		return ""
	}
	ns, _, _ := strings.Cut(rest, "/")
	return ns
}

// Stop kills the proxy and waits for it.
func (p *Proxy) Stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// Ready reports whether the proxy's /ready answers 200 (it holds a valid certificate).
func (p *Proxy) Ready() error {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", p.Admin))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/ready answered %d", resp.StatusCode)
	}
	return nil
}

// Metrics returns the proxy's /metrics text.
func (p *Proxy) Metrics() (string, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.Admin))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// BuildProxy builds weft-proxy from the repository into dir and returns its path.
func BuildProxy(dir string) (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "weft-proxy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/weft-proxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building weft-proxy: %w\n%s", err, out)
	}
	return bin, nil
}

// FreePort returns a loopback TCP port that is free now and that no outgoing
// connection can take before a process binds it (see package freeport).
func FreePort() (int, error) { return freeport.Get() }

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	port, err := FreePort()
	return fmt.Sprintf("127.0.0.1:%d", port), err
}
