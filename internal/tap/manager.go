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

package tap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/replicacache"
)

// Names fixed by config/tap.
const (
	// DefaultAddr is where weft-controller serves the tap API (Service weft-tap,
	// port 443, targets it).
	DefaultAddr = ":8443"
	// DefaultCertDir holds tls.crt and tls.key from the Secret weft-tap-cert.
	DefaultCertDir = "/var/run/weft/tap-api-certs"
)

// Options configure the tap API in weft-controller.
type Options struct {
	// Addr is the listen address. Default: DefaultAddr.
	Addr string
	// CertDir holds the serving certificate (tls.crt, tls.key), reloaded when
	// cert-manager renews it. Default: DefaultCertDir.
	CertDir string
	// Signer signs the tap client certificate and reads the trust roots: the
	// identity service of the same replica.
	Signer Signer
}

// Signer is what the identity service lends the tap API.
type Signer interface {
	TapClientCertificate(ctx context.Context) (*tls.Certificate, error)
	TrustRoots(ctx context.Context) (*x509.CertPool, error)
}

// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups="",resources=pods;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments;replicasets;statefulsets;daemonsets,verbs=get
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get

// AddToManager serves the tap API on every replica. The front-proxy ConfigMap in
// kube-system is read through a cache restricted to that one object (the RoleBinding to
// extension-apiserver-authentication-reader in config/tap grants exactly that).
func AddToManager(mgr ctrl.Manager, opts Options) error {
	if opts.Signer == nil {
		return errors.New("tap: Options.Signer is required")
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.CertDir == "" {
		opts.CertDir = DefaultCertDir
	}
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:            mgr.GetScheme(),
		Mapper:            mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{AuthConfigMapNamespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Field: fields.OneTermEqualSelector("metadata.name", AuthConfigMapName)},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the tap API's cache: %w", err)
	}
	if err := replicacache.Add(mgr, c); err != nil {
		return fmt.Errorf("adding the tap API's cache: %w", err)
	}
	fps := &frontProxySource{reader: c}
	log := mgr.GetLogger().WithName("tap")
	srv := &Server{
		FrontProxy: func(r *http.Request) (*FrontProxy, error) { return fps.get(r.Context()) },
		Reviewer:   mgr.GetClient(),
		Reader:     mgr.GetAPIReader(),
		Fanout:     &Fanout{Credentials: meshCredentials{Signer: opts.Signer, meshes: mgr.GetClient()}, Log: log},
		Log:        log,
	}
	return mgr.Add(&runnable{srv: srv, addr: opts.Addr, certDir: opts.CertDir, cache: c})
}

// meshCredentials adds the Mesh's trust domain to the Signer.
type meshCredentials struct {
	Signer
	meshes client.Reader
}

func (c meshCredentials) TrustDomain(ctx context.Context) (string, error) {
	m := &meshv1alpha1.Mesh{}
	if err := c.meshes.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, m); err != nil {
		return "", fmt.Errorf("reading the Mesh %q: %w", meshv1alpha1.MeshName, err)
	}
	return m.Spec.TrustDomain, nil
}

type runnable struct {
	srv     *Server
	addr    string
	certDir string
	cache   cache.Cache
}

// NeedLeaderElection is false: every replica serves the tap API.
func (r *runnable) NeedLeaderElection() bool { return false }

func (r *runnable) Start(ctx context.Context) error {
	cw, err := certwatcher.New(filepath.Join(r.certDir, "tls.crt"), filepath.Join(r.certDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("loading the tap API serving certificate from %s: %w", r.certDir, err)
	}
	go func() {
		if err := cw.Start(ctx); err != nil {
			r.srv.Log.Error(err, "Watching the tap API serving certificate failed")
		}
	}()
	if !r.cache.WaitForCacheSync(ctx) {
		return errors.New("the tap API's cache did not sync")
	}
	lis, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", r.addr, err)
	}
	return Serve(ctx, lis, r.srv, cw.GetCertificate)
}

// Serve serves h over TLS on lis until ctx is done. The client certificate is
// requested, not verified by crypto/tls: the handler verifies it against the
// front-proxy CA of the moment, which rotates.
func Serve(ctx context.Context, lis net.Listener, h http.Handler, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) error {
	hs := &http.Server{
		Handler: h,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12, // the kube-apiserver's proxy may be configured for 1.2
			GetCertificate: getCert,
			ClientAuth:     tls.RequestClientCert,
			NextProtos:     []string{"h2", "http/1.1"},
		},
		// No ReadTimeout or WriteTimeout: a tap is a long stream. The body is read only
		// after the caller proved to be the API server, and each event write has its
		// own deadline (handler.go).
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(lis, "", "") }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			_ = hs.Close()
		}
		return nil
	case err := <-errc:
		return err
	}
}
