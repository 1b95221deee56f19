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

package validation

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/svcname"
)

// ServiceRef is a cluster Service an object refers to, and the field that does so. The
// rules here never read the cluster: a caller that wants to know whether the Service
// exists (the webhooks warn, the reconcilers set ResolvedRefs) looks it up itself.
type ServiceRef struct {
	Path *field.Path
	Key  types.NamespacedName
}

// ServiceProfileNames checks the names a profile carries: its own name and the
// authority of every dstOverride must be DNS names, and those inside the cluster domain
// must be Service FQDNs, <service>.<namespace>.svc.<clusterDomain>. It returns the
// errors and the cluster Services the valid names refer to, in field order.
func ServiceProfileNames(sp *meshv1alpha1.ServiceProfile, clusterDomain string) (field.ErrorList, []ServiceRef) {
	var errs field.ErrorList
	var refs []ServiceRef
	namePath := field.NewPath("metadata", "name")
	if ref, err := parseServiceName(sp.Name, clusterDomain); err != nil {
		errs = append(errs, field.Invalid(namePath, sp.Name, err.Error()))
	} else if ref != nil {
		refs = append(refs, ServiceRef{Path: namePath, Key: *ref})
	}
	for i, d := range sp.Spec.DstOverrides {
		ap := field.NewPath("spec", "dstOverrides").Index(i).Child("authority")
		host, err := parseAuthority(d.Authority)
		if err != nil {
			errs = append(errs, field.Invalid(ap, d.Authority, err.Error()))
			continue
		}
		if ref, err := parseServiceName(host, clusterDomain); err != nil {
			errs = append(errs, field.Invalid(ap, d.Authority, err.Error()))
		} else if ref != nil {
			refs = append(refs, ServiceRef{Path: ap, Key: *ref})
		}
	}
	return errs, refs
}

// parseServiceName accepts a DNS name. A name inside the cluster domain must be a
// Service's FQDN, <service>.<namespace>.svc.<clusterDomain>, which it returns (read by
// svcname, as the compiler and the destination service read it); other DNS names are
// external and return nil. The checks around it only say what is wrong.
func parseServiceName(name, clusterDomain string) (*types.NamespacedName, error) {
	if msgs := k8svalidation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return nil, fmt.Errorf("must be a DNS name: %s", strings.Join(msgs, "; "))
	}
	if !strings.Contains(name, ".") {
		return nil, fmt.Errorf("must be fully qualified, e.g. web.shop.svc.%s", clusterDomain)
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) > 63 {
			return nil, fmt.Errorf("DNS label %q is longer than 63 characters", label)
		}
	}
	if svc, ok := svcname.Parse(name, clusterDomain, svcname.FQDNOnly); ok {
		return &types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, nil
	}
	// Not a Service of this cluster: an external name, or a mistake worth naming.
	suffix := ".svc." + clusterDomain
	if !strings.HasSuffix(name, suffix) {
		if strings.HasSuffix(name, ".svc") || strings.Contains(name, ".svc.") {
			return nil, fmt.Errorf("looks like a Service name but is not <service>.<namespace>.svc.%s", clusterDomain)
		}
		return nil, nil
	}
	parts := strings.Split(strings.TrimSuffix(name, suffix), ".")
	if len(parts) != 2 {
		return nil, fmt.Errorf("a Service's name is <service>.<namespace>.svc.%s", clusterDomain)
	}
	if msgs := k8svalidation.IsDNS1035Label(parts[0]); len(msgs) > 0 {
		return nil, fmt.Errorf("service name %q: %s", parts[0], strings.Join(msgs, "; "))
	}
	if msgs := k8svalidation.IsDNS1123Label(parts[1]); len(msgs) > 0 {
		return nil, fmt.Errorf("namespace %q: %s", parts[1], strings.Join(msgs, "; "))
	}
	return nil, fmt.Errorf("a Service's name is <service>.<namespace>.svc.%s", clusterDomain)
}

// parseAuthority splits host[:port] and checks the port.
func parseAuthority(a string) (string, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// No port: the whole authority is the host.
		if strings.Contains(a, ":") {
			return "", fmt.Errorf("must be host or host:port")
		}
		return a, nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q must be a number between 1 and 65535", port)
	}
	return host, nil
}
