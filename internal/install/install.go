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

// Package install renders and applies Weft's install for `weft install` and removes it
// for `weft uninstall`: the objects of config/default (embedded at build time, so the
// CLI installs what the kustomize and Helm paths install) plus, when wanted, the Gateway
// API CRDs (internal/gatewayapi decides). Objects are applied with server-side apply
// under the field manager "weft", CRDs first and Established before anything else, so
// running it twice changes nothing.
package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/config"
	"github.com/weftmesh/weft/internal/gatewayapi"
)

// FieldManager is the server-side apply field manager of everything `weft install`
// applies; `weft uninstall` removes Gateway API CRDs only when this manager applied them.
const FieldManager = "weft"

var crdGVK = apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition")

// Decode reads a multi-document YAML stream into objects, skipping empty documents.
func Decode(b []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decoding the install manifests: %w", err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// WeftObjects returns the objects of config/default, as rendered at build time.
func WeftObjects() ([]*unstructured.Unstructured, error) {
	objs, err := Decode(config.WeftInstall)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, errors.New("the embedded install is empty: rebuild weft after make manifests")
	}
	return objs, nil
}

// Plan is what an install applies: CRDs (Weft's, then the Gateway API's the decision
// asks for) and then the other objects, Namespaces first and webhook configurations
// last (a fail-closed webhook registered before its server would refuse requests that
// nothing could answer yet).
type Plan struct {
	GatewayAPI     gatewayapi.Decision
	CRDs           []*unstructured.Unstructured // Weft's
	GatewayAPICRDs []*unstructured.Unstructured // as GatewayAPI decided
	Objects        []*unstructured.Unstructured
}

// All returns the plan's objects in apply order.
func (p *Plan) All() []*unstructured.Unstructured {
	return append(p.AllCRDs(), p.Objects...)
}

// AllCRDs returns Weft's and the Gateway API's CRDs.
func (p *Plan) AllCRDs() []*unstructured.Unstructured {
	return append(slices.Clone(p.CRDs), p.GatewayAPICRDs...)
}

// OnlyGatewayAPI drops Weft's objects: for installers that apply Weft another way
// (hack/demo/install.sh applies config/default with kubectl) and want only the
// Gateway API decision applied.
func (p *Plan) OnlyGatewayAPI() {
	p.CRDs, p.Objects = nil, nil
}

// NewPlan builds the plan from the embedded manifests and, unless mode is None, what
// the cluster has of the Gateway API CRDs (in; nil when mode is None).
func NewPlan(in *gatewayapi.Installed, mode gatewayapi.Mode) (*Plan, error) {
	objs, err := WeftObjects()
	if err != nil {
		return nil, err
	}
	p := &Plan{GatewayAPI: gatewayapi.Decision{Action: gatewayapi.Skip, Message: "Gateway API CRDs left as they are (--gateway-api=none)"}}
	if mode != gatewayapi.None {
		if in == nil {
			return nil, errors.New("the Gateway API decision needs the cluster's CRDs")
		}
		p.GatewayAPI = gatewayapi.Decide(in, GatewayAPIVersion(), mode)
	}
	var namespaces, webhooks, rest []*unstructured.Unstructured
	for _, o := range objs {
		switch gk := o.GroupVersionKind().GroupKind(); {
		case gk == crdGVK.GroupKind():
			p.CRDs = append(p.CRDs, o)
		case gk.Group == "" && gk.Kind == "Namespace":
			namespaces = append(namespaces, o)
		case gk.Group == "admissionregistration.k8s.io" && strings.HasSuffix(gk.Kind, "WebhookConfiguration"):
			webhooks = append(webhooks, o)
		default:
			rest = append(rest, o)
		}
	}
	gw, err := GatewayAPIPlan(in, p.GatewayAPI)
	if err != nil {
		return nil, err
	}
	p.GatewayAPICRDs = gw
	p.Objects = append(append(namespaces, rest...), webhooks...)
	return p, nil
}

func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	// The typed object's zero fields (creationTimestamp: null, status: {}) are noise in
	// a render and in an apply.
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u, nil
}

// WriteYAML writes objects as one YAML stream.
func WriteYAML(w io.Writer, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "---\n%s", b); err != nil {
			return err
		}
	}
	return nil
}

// Result counts what an apply did.
type Result struct {
	Created, Configured, Unchanged int
}

// Apply applies the plan: the CRDs, waits (up to timeout) until they are Established,
// then the rest. Each object is applied with server-side apply as FieldManager, taking
// over fields another manager set (force), as `kubectl apply --server-side
// --force-conflicts` does in the documented kustomize path. log gets one line per step.
func Apply(ctx context.Context, c client.Client, p *Plan, timeout time.Duration, log io.Writer) (Result, error) {
	var res Result
	crds := p.AllCRDs()
	if err := applyAll(ctx, c, crds, &res); err != nil {
		return res, err
	}
	fmt.Fprintf(log, "applied %d CustomResourceDefinitions; waiting until they are Established\n", len(crds))
	if err := WaitEstablished(ctx, c, crds, timeout); err != nil {
		return res, err
	}
	if err := applyAll(ctx, c, p.Objects, &res); err != nil {
		return res, err
	}
	fmt.Fprintf(log, "applied %d objects: %d created, %d configured, %d unchanged\n",
		len(crds)+len(p.Objects), res.Created, res.Configured, res.Unchanged)
	return res, nil
}

func applyAll(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, res *Result) error {
	for _, o := range objs {
		before := &unstructured.Unstructured{}
		before.SetGroupVersionKind(o.GroupVersionKind())
		err := c.Get(ctx, client.ObjectKeyFromObject(o), before)
		existed := err == nil
		switch {
		case meta.IsNoMatchError(err):
			// cert-manager's kinds (Issuer, Certificate) are the ones the install
			// creates but does not bring.
			return fmt.Errorf("the API server does not serve %s, which the install creates: is cert-manager installed? (weft check --pre): %w",
				o.GroupVersionKind(), err)
		case err != nil && !apierrors.IsNotFound(err):
			return fmt.Errorf("reading %s: %w", describe(o), err)
		}
		u := o.DeepCopy()
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s: %w", describe(o), err)
		}
		after := &unstructured.Unstructured{}
		after.SetGroupVersionKind(o.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), after); err != nil {
			return fmt.Errorf("reading %s back: %w", describe(o), err)
		}
		switch {
		case !existed:
			res.Created++
		case before.GetResourceVersion() == after.GetResourceVersion():
			res.Unchanged++
		default:
			res.Configured++
		}
	}
	return nil
}

// WaitEstablished waits until every CRD among objs is Established (served), or timeout.
func WaitEstablished(ctx context.Context, c client.Reader, objs []*unstructured.Unstructured, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, o := range objs {
		if o.GroupVersionKind() != crdGVK {
			continue
		}
		for {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			err := c.Get(ctx, types.NamespacedName{Name: o.GetName()}, crd)
			if err == nil && established(crd) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CustomResourceDefinition %s is not Established after %s (kubectl describe crd %s): %w", o.GetName(), timeout, o.GetName(), ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established {
			return c.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}

func describe(o client.Object) string {
	kind := o.GetObjectKind().GroupVersionKind().Kind
	if ns := o.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", kind, ns, o.GetName())
	}
	return fmt.Sprintf("%s %s", kind, o.GetName())
}

// Describe names an object as "Kind namespace/name" for messages.
func Describe(o client.Object) string { return describe(o) }

// ManagedBy says whether a field manager has applied or updated the object.
func ManagedBy(o metav1.Object, manager string) bool {
	for _, mf := range o.GetManagedFields() {
		if mf.Manager == manager {
			return true
		}
	}
	return false
}

// GVR returns the resource of an object's kind, for access reviews.
func GVR(m meta.RESTMapper, o *unstructured.Unstructured) (schema.GroupVersionResource, error) {
	gvk := o.GroupVersionKind()
	mapping, err := m.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	return mapping.Resource, nil
}
