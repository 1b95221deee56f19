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
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/trustbundle"
)

// The ConfigMap in which the kube-apiserver publishes how it authenticates itself to
// extension API servers (its --requestheader-* flags), and its keys.
const (
	AuthConfigMapNamespace = "kube-system"
	AuthConfigMapName      = "extension-apiserver-authentication"

	keyRequestHeaderCA      = "requestheader-client-ca-file"
	keyRequestHeaderNames   = "requestheader-allowed-names"
	keyRequestHeaderUser    = "requestheader-username-headers"
	keyRequestHeaderGroup   = "requestheader-group-headers"
	keyRequestHeaderExtra   = "requestheader-extra-headers-prefix"
	keyRequestHeaderUID     = "requestheader-uid-headers"
	maxIdentityHeaderValues = 64
)

// User is who the kube-apiserver says made a request.
type User struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// FrontProxy is the kube-apiserver's front-proxy configuration: a request is from the
// API server only if its client certificate chains to CA (with client-auth usage) and,
// when AllowedNames is not empty, its common name is one of them. Only then are the
// identity headers believed; anyone else could write them.
type FrontProxy struct {
	CA            *x509.CertPool
	AllowedNames  []string
	UserHeaders   []string
	GroupHeaders  []string
	ExtraPrefixes []string
	UIDHeaders    []string
}

// ParseFrontProxy reads the front-proxy configuration from the
// extension-apiserver-authentication ConfigMap. Without a requestheader CA the API
// server cannot delegate authentication, and the tap API authenticates no one.
func ParseFrontProxy(cm *corev1.ConfigMap) (*FrontProxy, error) {
	pemCA := cm.Data[keyRequestHeaderCA]
	if strings.TrimSpace(pemCA) == "" {
		return nil, fmt.Errorf("ConfigMap %s/%s has no %s: the kube-apiserver runs without --requestheader-client-ca-file, so it cannot call aggregated APIs",
			cm.Namespace, cm.Name, keyRequestHeaderCA)
	}
	cas, err := trustbundle.ParsePEM([]byte(pemCA))
	if err != nil {
		return nil, fmt.Errorf("parsing %s of ConfigMap %s/%s: %w", keyRequestHeaderCA, cm.Namespace, cm.Name, err)
	}
	fp := &FrontProxy{CA: x509.NewCertPool()}
	for _, c := range cas {
		fp.CA.AddCert(c)
	}
	for key, dst := range map[string]*[]string{
		keyRequestHeaderNames: &fp.AllowedNames,
		keyRequestHeaderUser:  &fp.UserHeaders,
		keyRequestHeaderGroup: &fp.GroupHeaders,
		keyRequestHeaderExtra: &fp.ExtraPrefixes,
		keyRequestHeaderUID:   &fp.UIDHeaders,
	} {
		// The API server writes each list as a JSON array of strings.
		if v := strings.TrimSpace(cm.Data[key]); v != "" {
			if err := json.Unmarshal([]byte(v), dst); err != nil {
				return nil, fmt.Errorf("parsing %s of ConfigMap %s/%s: %w", key, cm.Namespace, cm.Name, err)
			}
		}
	}
	if len(fp.UserHeaders) == 0 {
		return nil, fmt.Errorf("ConfigMap %s/%s has no %s: the kube-apiserver sends no user name to aggregated APIs", cm.Namespace, cm.Name, keyRequestHeaderUser)
	}
	return fp, nil
}

// errUnauthenticated is all a caller learns when it is not the API server.
var errUnauthenticated = errors.New("the tap API is reached only through the kube-apiserver: the request carries no front-proxy client certificate it trusts")

// errNoUser: the API server's certificate, but no user name (its availability check).
var errNoUser = fmt.Errorf("%w (no user name header)", errUnauthenticated)

func isNoUser(err error) bool { return errors.Is(err, errNoUser) }

// Authenticate returns the user of a request the kube-apiserver forwarded, or
// errUnauthenticated for anyone else.
func (fp *FrontProxy) Authenticate(r *http.Request) (*User, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, errUnauthenticated
	}
	certs := r.TLS.PeerCertificates
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: fp.CA, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("%w (%w)", errUnauthenticated, err)
	}
	if len(fp.AllowedNames) > 0 && !slices.Contains(fp.AllowedNames, certs[0].Subject.CommonName) {
		return nil, fmt.Errorf("%w (common name %q is not among the allowed names)", errUnauthenticated, certs[0].Subject.CommonName)
	}
	u := &User{Name: firstValue(r.Header, fp.UserHeaders), UID: firstValue(r.Header, fp.UIDHeaders)}
	if u.Name == "" {
		return nil, errNoUser
	}
	for _, h := range fp.GroupHeaders {
		u.Groups = append(u.Groups, r.Header.Values(h)...)
	}
	for name, vals := range r.Header {
		for _, prefix := range fp.ExtraPrefixes {
			if len(name) <= len(prefix) || !strings.EqualFold(name[:len(prefix)], prefix) {
				continue
			}
			// The key is lower-case and URL-escaped on the wire (what the API
			// server's request-header authenticator reads back).
			key, err := url.PathUnescape(strings.ToLower(name[len(prefix):]))
			if err != nil {
				continue
			}
			if u.Extra == nil {
				u.Extra = map[string][]string{}
			}
			u.Extra[key] = append(u.Extra[key], vals...)
		}
	}
	if len(u.Groups) > maxIdentityHeaderValues || len(u.Extra) > maxIdentityHeaderValues {
		return nil, fmt.Errorf("%w (too many group or extra headers)", errUnauthenticated)
	}
	return u, nil
}

func firstValue(h http.Header, names []string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// frontProxySource reads the ConfigMap through a (cached) reader and re-parses it only
// when its resourceVersion changes, so a rotated front-proxy CA applies to the next
// request.
type frontProxySource struct {
	reader client.Reader

	mu      sync.Mutex
	rv      string
	current *FrontProxy
}

func (s *frontProxySource) get(ctx context.Context) (*FrontProxy, error) {
	cm := &corev1.ConfigMap{}
	key := types.NamespacedName{Namespace: AuthConfigMapNamespace, Name: AuthConfigMapName}
	if err := s.reader.Get(ctx, key, cm); err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != nil && s.rv == cm.ResourceVersion {
		return s.current, nil
	}
	fp, err := ParseFrontProxy(cm)
	if err != nil {
		return nil, err
	}
	s.rv, s.current = cm.ResourceVersion, fp
	return fp, nil
}
