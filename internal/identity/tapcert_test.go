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

package identity_test

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
)

// TestTapIdentityIsNeverSigned: a proxy's tap server answers only the tap identity, so
// a pod holding it could read every request of the mesh. Even a pod running as a
// ServiceAccount named weft-tap in the control-plane namespace (an admin's mistake, or
// an attacker with create rights there) with a valid token gets PermissionDenied, and
// no TokenReview is spent on it.
func TestTapIdentityIsNeverSigned(t *testing.T) {
	e := startIDEnv(t)
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: cpNS, Name: meshdefaults.TapServiceAccount}}
	if err := e.c.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	tr, err := e.kube.CoreV1().ServiceAccounts(cpNS).CreateToken(ctx, sa.Name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{identity.Audience}, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cl := e.serve(t, identity.Limits{PeerRate: 1e6, PeerBurst: 1e6}, nil)
	tapID := meshdefaults.TapIdentity("cluster.local", cpNS)
	if want := identity.SPIFFEID("cluster.local", cpNS, meshdefaults.TapServiceAccount); tapID != want {
		t.Fatalf("TapIdentity = %s, want the workload ID %s (the test would test nothing)", tapID, want)
	}
	refused := testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(identity.ReasonReservedIdentity))
	before := e.tokenReviews(t)
	_, err = cl.Certify(ctx, &api.CertifyRequest{Identity: tapID, Token: []byte(tr.Status.Token), CertificateSigningRequest: makeCSR(t, tapID)})
	st := status.Convert(err)
	if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "reserved") {
		t.Fatalf("Certify(tap identity) = %v %q, want PermissionDenied saying it is reserved", st.Code(), st.Message())
	}
	if got := testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(identity.ReasonReservedIdentity)) - refused; got != 1 {
		t.Errorf("rejected{reason=reserved_identity} grew by %v, want 1", got)
	}
	if reviews := e.tokenReviews(t) - before; reviews != 0 {
		t.Errorf("the refusal cost %v TokenReviews, want 0", reviews)
	}
	// The same ServiceAccount's token still works for an ordinary workload identity
	// elsewhere: the control case, so the refusal above is about the identity.
	id := identity.SPIFFEID("cluster.local", appNS, appSA)
	if _, err := cl.Certify(ctx, &api.CertifyRequest{Identity: id, Token: []byte(e.token(t, identity.Audience)), CertificateSigningRequest: makeCSR(t, id)}); err != nil {
		t.Fatalf("Certify(%s) = %v, want a certificate", id, err)
	}
}

// TestTapClientCertificate: weft-controller's tap client certificate carries exactly
// the tap identity, chains to the issuer, is for client auth, and is reused until it
// must be renewed.
func TestTapClientCertificate(t *testing.T) {
	e := startIDEnv(t)
	svc, err := identity.New(identity.Config{Namespace: cpNS, Reader: e.c, Reviewer: e.c})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := svc.TapClientCertificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.caCert)
	if err := peertls.VerifyName([]*x509.Certificate{c.Leaf}, roots, c.Leaf.NotBefore.Add(2*60e9), meshdefaults.TapIdentity("cluster.local", cpNS)); err != nil {
		t.Fatalf("the tap certificate does not prove the tap identity: %v", err)
	}
	if len(c.Leaf.ExtKeyUsage) != 1 || c.Leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || c.Leaf.IsCA || len(c.Leaf.DNSNames) != 0 {
		t.Errorf("tap certificate: ExtKeyUsage %v, IsCA %v, DNS %v; want client auth only, no CA, no DNS name", c.Leaf.ExtKeyUsage, c.Leaf.IsCA, c.Leaf.DNSNames)
	}
	again, err := svc.TapClientCertificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again != c {
		t.Errorf("a second call minted a new certificate; want the cached one until half its life")
	}
}
