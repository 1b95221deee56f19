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

package certmanager_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weftmesh/weft/internal/certmanager"
	"github.com/weftmesh/weft/internal/testenv"
)

// TestCAInjector runs the real controllers and the CA injector the way
// cmd/weft-cert-manager does and checks that a webhook configuration annotated with
// cert-manager.io/inject-ca-from receives the Certificate's CA, for each webhook kind.
func TestCAInjector(t *testing.T) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env.CRDDirectoryPaths = []string{filepath.Join(repo, "config", "cert-manager", "crds")}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the test API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	t.Run("a manager without a user agent is refused", func(t *testing.T) {
		mgr, err := ctrl.NewManager(rest.CopyConfig(cfg), ctrl.Options{
			Scheme: certmanager.InjectorScheme, Client: certmanager.InjectorClientOptions(),
			Metrics: metricsserver.Options{BindAddress: "0"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := certmanager.AddCAInjector(ctx, mgr); err == nil || !strings.Contains(err.Error(), "UserAgent") {
			t.Fatalf("AddCAInjector = %v, want an error about the UserAgent", err)
		}
	})

	mgrCfg := rest.CopyConfig(cfg)
	mgrCfg.UserAgent = "weft-cert-manager/test"
	mgr, err := ctrl.NewManager(mgrCfg, ctrl.Options{
		Scheme: certmanager.InjectorScheme, Client: certmanager.InjectorClientOptions(),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := certmanager.AddCAInjector(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	if err := certmanager.Start(ctx, certmanager.Config{RESTConfig: cfg}); err != nil {
		t.Fatalf("starting cert-manager: %v", err)
	}

	c, err := client.New(cfg, client.Options{Scheme: certmanager.InjectorScheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "inject-test"
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&cmv1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "selfsigned", Namespace: ns},
			Spec: cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{SelfSigned: &cmv1.SelfSignedIssuer{}}}},
		&cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "serving", Namespace: ns}, Spec: cmv1.CertificateSpec{
			DNSNames: []string{"webhook.inject-test.svc"}, SecretName: "serving",
			PrivateKey: &cmv1.CertificatePrivateKey{Algorithm: cmv1.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Name: "selfsigned", Kind: "Issuer"},
		}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}

	annotated := map[string]string{"cert-manager.io/inject-ca-from": ns + "/serving"}
	clientConfig := admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: ns, Name: "webhook", Path: ptr.To("/x")}}
	none := admissionv1.SideEffectClassNone
	tests := []struct {
		name    string
		obj     client.Object
		caOf    func(client.Object) []byte
		wantSet bool
	}{
		{
			name: "validating webhook configuration",
			obj: &admissionv1.ValidatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: "validating", Annotations: annotated},
				Webhooks: []admissionv1.ValidatingWebhook{{Name: "v.inject-test.dev", ClientConfig: clientConfig,
					SideEffects: &none, AdmissionReviewVersions: []string{"v1"}}},
			},
			caOf: func(o client.Object) []byte {
				return o.(*admissionv1.ValidatingWebhookConfiguration).Webhooks[0].ClientConfig.CABundle
			},
			wantSet: true,
		},
		{
			name: "mutating webhook configuration",
			obj: &admissionv1.MutatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: "mutating", Annotations: annotated},
				Webhooks: []admissionv1.MutatingWebhook{{Name: "m.inject-test.dev", ClientConfig: clientConfig,
					SideEffects: &none, AdmissionReviewVersions: []string{"v1"}}},
			},
			caOf: func(o client.Object) []byte {
				return o.(*admissionv1.MutatingWebhookConfiguration).Webhooks[0].ClientConfig.CABundle
			},
			wantSet: true,
		},
		{
			name: "no annotation, no injection",
			obj: &admissionv1.ValidatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: "plain"},
				Webhooks: []admissionv1.ValidatingWebhook{{Name: "p.inject-test.dev", ClientConfig: clientConfig,
					SideEffects: &none, AdmissionReviewVersions: []string{"v1"}}},
			},
			caOf: func(o client.Object) []byte {
				return o.(*admissionv1.ValidatingWebhookConfiguration).Webhooks[0].ClientConfig.CABundle
			},
		},
	}
	for _, tc := range tests {
		if err := c.Create(ctx, tc.obj); err != nil {
			t.Fatalf("creating %s: %v", tc.name, err)
		}
	}

	// The CA the injector must copy: the issued Secret's ca.crt.
	var secret corev1.Secret
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "serving"}, &secret)
		if err == nil && len(secret.Data["ca.crt"]) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the serving certificate was not issued in 30s (last error %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.obj.DeepCopyObject().(client.Object)
			wait := 30 * time.Second
			if !tc.wantSet {
				// Long enough for the injector to have acted on the annotated ones.
				wait = 2 * time.Second
			}
			deadline := time.Now().Add(wait)
			for {
				if err := c.Get(ctx, client.ObjectKeyFromObject(tc.obj), got); err != nil {
					t.Fatal(err)
				}
				if len(tc.caOf(got)) > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			ca := tc.caOf(got)
			switch {
			case tc.wantSet && !bytes.Equal(ca, secret.Data["ca.crt"]):
				t.Errorf("caBundle = %q, want the Secret's ca.crt %q", ca, secret.Data["ca.crt"])
			case !tc.wantSet && len(ca) > 0:
				t.Errorf("caBundle of an unannotated configuration was set to %q", ca)
			}
		})
	}
}
