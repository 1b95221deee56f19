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

package install

import (
	"fmt"
	"io/fs"
	"path"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/weftmesh/weft/config"
	"github.com/weftmesh/weft/internal/gatewayapi"
)

// BundledGatewayAPI returns the CRDs of a channel this build of Weft carries (the version
// of the gateway-api module in go.mod) verbatim, sorted by name.
func BundledGatewayAPI(ch gatewayapi.Channel) ([]*unstructured.Unstructured, error) {
	dir := "crd/gateway-api"
	if ch == gatewayapi.Experimental {
		dir = "crd/gateway-api-experimental"
	} else if ch != gatewayapi.Standard {
		return nil, fmt.Errorf("unknown Gateway API channel %q", ch)
	}
	files, err := fs.Glob(config.GatewayAPI, path.Join(dir, "gateway.networking.k8s.io_*.yaml"))
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		b, err := config.GatewayAPI.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := Decode(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, o := range objs {
			if o.GroupVersionKind() != crdGVK {
				return nil, fmt.Errorf("%s holds a %s, not a CustomResourceDefinition", f, o.GroupVersionKind())
			}
		}
		out = append(out, objs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s-channel Gateway API CRDs are embedded", ch)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// GatewayAPIVersion is the bundle-version of the CRDs this build carries.
func GatewayAPIVersion() string {
	crds, err := BundledGatewayAPI(gatewayapi.Standard)
	if err != nil {
		return ""
	}
	return crds[0].GetAnnotations()[gatewayapi.BundleVersionAnnotation]
}

// GatewayAPIPlan returns the CRDs to apply for a decision: the bundle of its channel, less any CRD
// the cluster has at a newer version (never downgrade one CRD, even within an upgrade).
func GatewayAPIPlan(in *gatewayapi.Installed, d gatewayapi.Decision) ([]*unstructured.Unstructured, error) {
	if d.Action == gatewayapi.Skip {
		return nil, nil
	}
	crds, err := BundledGatewayAPI(d.Channel)
	if err != nil {
		return nil, err
	}
	out := crds[:0]
	for _, crd := range crds {
		if live, ok := in.CRDs[crd.GetName()]; ok {
			lv, err1 := gatewayapi.Parse(live.Annotations[gatewayapi.BundleVersionAnnotation])
			ov, err2 := gatewayapi.Parse(crd.GetAnnotations()[gatewayapi.BundleVersionAnnotation])
			if err1 == nil && err2 == nil && ov.LessThan(lv) {
				continue
			}
		}
		out = append(out, crd)
	}
	return out, nil
}
