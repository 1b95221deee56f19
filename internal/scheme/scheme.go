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

// Package scheme holds the runtime.Scheme of every kind Weft reads or writes.
package scheme

import (
	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
)

// Scheme knows the Kubernetes built-in kinds, Weft's kinds, the Gateway API kinds and
// cert-manager's kinds, and CustomResourceDefinitions.
var Scheme = New()

// New returns a new scheme with every kind Weft uses.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(meshv1alpha1.AddToScheme(s))
	utilruntime.Must(policyv1alpha1.AddToScheme(s))
	utilruntime.Must(splitv1alpha2.AddToScheme(s))
	utilruntime.Must(gatewayv1.Install(s))
	utilruntime.Must(certmanagerv1.AddToScheme(s))
	// CustomResourceDefinitions: the CLI reads and installs them (weft check, install).
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}
