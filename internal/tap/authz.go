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
	"fmt"

	authzv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Group and Version of the tap API; Verb and Subresource are what RBAC grants: watch on
// <resource>/tap in tap.weft.dev, so `kubectl auth can-i watch deployments.tap.weft.dev/tap
// -n shop` answers whether a user may tap the deployments of shop.
const (
	Group       = "tap.weft.dev"
	Version     = "v1alpha1"
	Verb        = "watch"
	Subresource = "tap"
)

// Target is what a request taps: every pod of a namespace (Resource "namespaces", Name
// the namespace) or of one workload.
type Target struct {
	Namespace string
	Resource  string
	Name      string
}

func (t Target) String() string {
	if t.Resource == "namespaces" {
		return "namespace/" + t.Namespace
	}
	return t.Resource + "/" + t.Name + " in namespace " + t.Namespace
}

// authorize asks the API server whether u may watch t's tap subresource, with a
// SubjectAccessReview: RBAC (or whatever authorizer the cluster runs) decides, not
// Weft. A denial comes back with the permission the user lacks.
func authorize(ctx context.Context, c client.Client, u *User, t Target) (allowed bool, why string, err error) {
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Name, UID: u.UID, Groups: u.Groups,
		ResourceAttributes: &authzv1.ResourceAttributes{
			Verb: Verb, Group: Group, Version: Version, Resource: t.Resource, Subresource: Subresource,
			Namespace: t.Namespace, Name: t.Name,
		},
	}}
	if len(u.Extra) > 0 {
		sar.Spec.Extra = map[string]authzv1.ExtraValue{}
		for k, v := range u.Extra {
			sar.Spec.Extra[k] = v
		}
	}
	if err := c.Create(ctx, sar); err != nil {
		return false, "", fmt.Errorf("creating a SubjectAccessReview: %w", err)
	}
	if sar.Status.Allowed && !sar.Status.Denied {
		return true, "", nil
	}
	why = fmt.Sprintf("user %q may not tap %s: it needs verb %q on resource \"%s/%s\" in API group %q in namespace %q (e.g. a RoleBinding to ClusterRole weft-tap-admin)",
		u.Name, t, Verb, t.Resource, Subresource, Group, t.Namespace)
	if sar.Status.Reason != "" {
		why += ": " + sar.Status.Reason
	}
	return false, why, nil
}
