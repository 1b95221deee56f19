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

package certmanager

import (
	"context"
	"errors"
	"fmt"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrl "sigs.k8s.io/controller-runtime/pkg/manager"
)

// InjectorScheme holds every kind the CA injector reads or writes: the webhook
// configurations, CRDs, APIServices, Secrets and cert-manager's Certificates.
var InjectorScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(apiregistrationv1.AddToScheme(s))
	utilruntime.Must(cmv1.AddToScheme(s))
	return s
}()

// InjectorClientOptions are the manager client options the CA injector expects: Secrets
// are read straight from the API server, because its Secret watches cache metadata
// only and a cached full-Secret informer would hold every Secret of the cluster.
func InjectorClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}

// AddCAInjector sets cert-manager's CA injector up on mgr: it copies the CA of the
// Certificate (or Secret) named by the cert-manager.io/inject-ca-from (or
// inject-ca-from-secret) annotation into the caBundle of annotated webhook
// configurations, CRD conversion webhooks and APIServices. The manager must use
// InjectorScheme (or a superset) and InjectorClientOptions. Like every controller of the
// manager, the injectors run only while it holds the leader lease when leader election
// is on.
//
// The manager's REST config must carry a UserAgent ("name/version"): the injectors
// apply the caBundle server-side with the name before the slash as field manager, and
// the API server rejects an apply without one.
func AddCAInjector(ctx context.Context, mgr ctrl.Manager) error {
	if mgr.GetConfig().UserAgent == "" {
		return errors.New("the manager's REST config has no UserAgent, which the CA injector uses as its field manager")
	}
	err := cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		// The resource names cainjector's own --enable-*-injectable flags map to.
		EnabledReconcilersFor: map[string]bool{
			"mutatingwebhookconfiguration":   true,
			"validatingwebhookconfiguration": true,
			"apiservice":                     true,
			"customresourcedefinition":       true,
		},
	})
	if err != nil {
		return fmt.Errorf("setting up cert-manager's CA injector: %w", err)
	}
	return nil
}
