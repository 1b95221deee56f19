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

package controllers

import (
	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/identity"
)

// CacheOptions is what the manager's shared cache may hold, for weft-controller and for
// every test that runs the reconcilers. It matches config/rbac: the controller may list
// and watch Secrets and cert-manager objects only in the control-plane namespace, and
// ConfigMaps only by the name weft-trust-roots, so an informer without these
// restrictions would be refused (and a cache without them would hold every Secret of
// the cluster). Pods are cut down to what the Mesh reconciler counts and the Server
// reconciler selects: at 10,000 pods their full specs are most of the controller's
// memory.
func CacheOptions(namespace string) cache.Options {
	inControlPlane := map[string]cache.Config{namespace: {}}
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&cmv1.Certificate{}:        {Namespaces: inControlPlane},
			&cmv1.CertificateRequest{}: {Namespaces: inControlPlane},
			&cmv1.Issuer{}:             {Namespaces: inControlPlane},
			// Nothing reads Secrets through the cache today (the reconciler reads the
			// issuer Secret live); should something start to, it gets the one Secret RBAC
			// allows rather than an informer the API server refuses.
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{namespace: {
				FieldSelector: fields.OneTermEqualSelector("metadata.name", identity.IssuerSecretName)}}},
			// Every published copy of the trust bundle, in every namespace: the reconciler
			// compares them with what it would write and skips unchanged ones.
			&corev1.ConfigMap{}: {Field: fields.OneTermEqualSelector("metadata.name", TrustRootsName)},
			&corev1.Pod{}:       {Transform: slimPod},
		},
	}
}

// slimPod keeps what reconcileProxies, the pod predicates and the bundle publisher
// read: identity, the injector's label, the containers' names (is there a
// weft-proxy?), the phase and the containers' readiness; and what the Server reconciler
// reads: the labels (podSelector) and the containers' ports (a Server's port by name).
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	names := func(cs []corev1.Container) []corev1.Container {
		out := make([]corev1.Container, 0, len(cs))
		for _, c := range cs {
			var ports []corev1.ContainerPort
			for _, cp := range c.Ports {
				ports = append(ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: cp.ContainerPort, Protocol: cp.Protocol})
			}
			// restartPolicy tells a native sidecar (whose ports serve) from an init
			// container.
			out = append(out, corev1.Container{Name: c.Name, Ports: ports, RestartPolicy: c.RestartPolicy})
		}
		return out
	}
	statuses := func(ss []corev1.ContainerStatus) []corev1.ContainerStatus {
		out := make([]corev1.ContainerStatus, 0, len(ss))
		for _, s := range ss {
			out = append(out, corev1.ContainerStatus{Name: s.Name, Ready: s.Ready})
		}
		return out
	}
	return &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.Name,
			Namespace:         p.Namespace,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			DeletionTimestamp: p.DeletionTimestamp,
			Labels:            p.Labels,
		},
		Spec: corev1.PodSpec{
			InitContainers: names(p.Spec.InitContainers),
			Containers:     names(p.Spec.Containers),
		},
		Status: corev1.PodStatus{
			Phase:                 p.Status.Phase,
			InitContainerStatuses: statuses(p.Status.InitContainerStatuses),
			ContainerStatuses:     statuses(p.Status.ContainerStatuses),
		},
	}, nil
}
