// Package webhooktest starts a real kube-apiserver (internal/testenv) that calls Weft's
// webhooks over TLS, with the webhook configurations exactly as config/webhook builds
// them (selectors and failure policies included), and a manager serving the webhooks.
// The webhooks' own tests and the CLI's tests (which compare `weft inject` with the
// injector) share it.
package webhooktest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/webhooks"
)

// ControlPlaneNamespace is the control-plane namespace of the test environment.
const ControlPlaneNamespace = meshdefaults.ControlPlaneNamespace

// Env is a running API server with the webhooks registered and served.
type Env struct {
	Env    *envtest.Environment
	Config *rest.Config
	// Client talks to the API server directly (no cache).
	Client client.Client
	// Cached reads through the manager's cache, which the webhooks read.
	Cached client.Reader
	stop   context.CancelFunc
	done   chan error
}

// WebhookConfigurations builds config/webhook with the repository's kustomize and
// returns the webhook configurations in it.
func WebhookConfigurations() ([]*admissionregistrationv1.MutatingWebhookConfiguration, []*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	objs, err := testenv.Kustomize(filepath.Join("config", "webhook"))
	if err != nil {
		return nil, nil, err
	}
	var muts []*admissionregistrationv1.MutatingWebhookConfiguration
	var vals []*admissionregistrationv1.ValidatingWebhookConfiguration
	for _, obj := range objs {
		switch obj.GetKind() {
		case "MutatingWebhookConfiguration":
			m := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, m); err != nil {
				return nil, nil, err
			}
			muts = append(muts, m)
		case "ValidatingWebhookConfiguration":
			v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, v); err != nil {
				return nil, nil, err
			}
			vals = append(vals, v)
		}
	}
	if len(muts) == 0 || len(vals) == 0 {
		return nil, nil, fmt.Errorf("config/webhook has %d mutating and %d validating configurations", len(muts), len(vals))
	}
	return muts, vals, nil
}

// Start starts the API server and the webhook server and waits until the webhooks
// answer.
func Start() (*Env, error) {
	// controller-runtime complains, with a stack trace, about logs written before a
	// logger is set; the tests read results, not logs.
	ctrl.SetLogger(logr.Discard())
	env, err := testenv.New()
	if err != nil {
		return nil, err
	}
	muts, vals, err := WebhookConfigurations()
	if err != nil {
		return nil, err
	}
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{MutatingWebhooks: muts, ValidatingWebhooks: vals}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the API server: %w", err)
	}
	e := &Env{Env: env, Config: cfg, done: make(chan error, 1)}
	if err := e.startManager(); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) startManager() error {
	wo := &e.Env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(e.Config, ctrl.Options{
		Scheme:                 testenv.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		}),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if err := webhooks.AddToManager(mgr, webhooks.Options{Namespace: ControlPlaneNamespace}); err != nil {
		return fmt.Errorf("registering the webhooks: %w", err)
	}
	e.Client, err = client.New(e.Config, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	e.Cached = mgr.GetClient()
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	go func() { e.done <- mgr.Start(ctx) }()

	// The API server calls the webhooks as soon as they are registered, so wait for
	// the TLS listener before any test creates an object.
	addr := net.JoinHostPort(wo.LocalServingHost, strconv.Itoa(wo.LocalServingPort))
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only probing that the listener is up
		if err == nil {
			_ = conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			cancel()
			return fmt.Errorf("the webhook server on %s did not come up: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StopWebhooks stops the manager, and with it the webhook server, leaving the API
// server running with the webhook configurations in place: what the cluster sees while
// weft-controller is down.
func (e *Env) StopWebhooks() error {
	if e.stop == nil {
		return nil
	}
	e.stop()
	e.stop = nil
	if err := <-e.done; err != nil {
		return fmt.Errorf("the manager stopped with an error: %w", err)
	}
	return nil
}

// Stop stops the manager and the API server.
func (e *Env) Stop() error {
	err := e.StopWebhooks()
	if serr := e.Env.Stop(); serr != nil {
		return serr
	}
	return err
}
