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

package destination

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/internal/inbound"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// The inbound policy API on the destination service's port: real API server, real
// informers, a real grpc-go client over mTLS with certificates of the suite's trust
// anchor.

const inboundPodYAML = `
apiVersion: v1
kind: Pod
metadata: {namespace: %[1]s, name: %[2]s, labels: {app: web}}
spec:
  serviceAccountName: web
  initContainers: [{name: weft-proxy, image: weft-proxy:dev, restartPolicy: Always}]
  containers:
  - name: app
    image: app:dev
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /ready, port: http}}
`

// inboundConn dials the service as a proxy running as ServiceAccount sa of namespace
// ns (ns "": no client certificate).
func inboundConn(t *testing.T, ns, sa string) apigrpc.InboundPoliciesClient {
	t.Helper()
	var cert *tls.Certificate
	if ns != "" {
		c, err := suite.pki.WorkloadCert(ns, sa)
		if err != nil {
			t.Fatal(err)
		}
		cert = &c
	}
	cc, err := desttest.Dial(suite.addr, suite.pki.ClientTLS(serverName, cert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return apigrpc.NewInboundPoliciesClient(cc)
}

type policyStream struct {
	msgs chan *api.InboundPolicy
	errc chan error
}

func watchPolicy(t *testing.T, c apigrpc.InboundPoliciesClient, ns, pod string) *policyStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &policyStream{msgs: make(chan *api.InboundPolicy, 100), errc: make(chan error, 1)}
	st, err := c.Watch(ctx, &api.WatchInbound{Namespace: ns, Pod: pod})
	if err != nil {
		s.errc <- err
		return s
	}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				s.errc <- err
				return
			}
			s.msgs <- m
		}
	}()
	return s
}

// watchKnownPolicy is watchPolicy for a pod the test has just applied: the control
// plane's informer may not hold it yet, and the stream then ends with NotFound, which a
// proxy answers by resubscribing. So does this, for up to 10s, and the stream it returns
// starts with the first policy.
func watchKnownPolicy(t *testing.T, c apigrpc.InboundPoliciesClient, ns, pod string) *policyStream {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := watchPolicy(t, c, ns, pod)
		select {
		case m := <-s.msgs:
			s.msgs <- m // the channel is empty but for this, and has room for 100
			return s
		case err := <-s.errc:
			if status.Code(err) != codes.NotFound || time.Now().After(deadline) {
				t.Fatalf("watching %s/%s: %v", ns, pod, err)
			}
			time.Sleep(20 * time.Millisecond)
		case <-time.After(time.Until(deadline)):
			t.Fatalf("no inbound policy for %s/%s within 10s", ns, pod)
		}
	}
}

func (s *policyStream) next(t *testing.T) *api.InboundPolicy {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case err := <-s.errc:
		t.Fatalf("the stream ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no inbound policy within 10s")
	}
	return nil
}

func (s *policyStream) err(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.errc:
		return err
	case m := <-s.msgs:
		t.Fatalf("expected an error, got a policy: %v", m)
	case <-time.After(10 * time.Second):
		t.Fatal("expected an error, got nothing")
	}
	return nil
}

func policyServer(p *api.InboundPolicy, port uint32) *api.InboundServer {
	i := slices.IndexFunc(p.GetServers(), func(s *api.InboundServer) bool { return s.GetPort() == port })
	if i < 0 {
		return nil
	}
	return p.GetServers()[i]
}

func inboundCompilations(t *testing.T) float64 {
	t.Helper()
	m := &dto.Metric{}
	if err := inbound.CompilationsTotal.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestInboundPolicyWatch(t *testing.T) {
	ns := namespace(t, "inbound")
	other := namespace(t, "inbound-other")
	apply(t, fmt.Sprintf(inboundPodYAML, ns, "web-0"))
	apply(t, fmt.Sprintf(inboundPodYAML, other, "web-0"))
	c := inboundConn(t, ns, "web")
	s := watchKnownPolicy(t, c, ns, "web-0")

	// First message: the default policy, and the probe port under it.
	first := s.next(t)
	if first.GetVersion() == "" || first.GetDefaultServer().GetRef().GetKind() != inbound.KindDefault {
		t.Fatalf("first policy: %v", first)
	}
	if p := policyServer(first, 8080); p == nil || !slices.Equal(p.GetProbePaths(), []string{"/ready"}) || p.GetRef().GetKind() != inbound.KindDefault {
		t.Fatalf("want the probe port 8080 with /ready under the default policy, got %v", first)
	}

	// A Server, a policy and a MeshTLSAuthentication of another namespace: one new
	// version, with the Server's port denying all but the policy's identities.
	apply(t, fmt.Sprintf(`
apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {namespace: %[1]s, name: web-http}
spec: {podSelector: {matchLabels: {app: web}}, port: http}
---
apiVersion: policy.weft.dev/v1alpha1
kind: MeshTLSAuthentication
metadata: {namespace: %[2]s, name: callers}
spec: {identities: ['spiffe://cluster.local/ns/%[2]s/sa/api']}
---
apiVersion: policy.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {namespace: %[1]s, name: web-callers}
spec:
  targetRef: {group: policy.weft.dev, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{group: policy.weft.dev, kind: MeshTLSAuthentication, name: callers, namespace: %[2]s}]
`, ns, other))
	var p *api.InboundPolicy
	for p == nil || len(policyServer(p, 8080).GetAuthorizations()) == 0 {
		p = s.next(t)
		if p.GetVersion() == first.GetVersion() {
			t.Fatalf("a policy sent again with the same version %s", p.GetVersion())
		}
	}
	srv := policyServer(p, 8080)
	if srv.GetRef().GetName() != "web-http" || len(srv.GetAuthorizations()) != 1 ||
		srv.GetAuthorizations()[0].GetIdentities()[0].GetMatches()[0].GetExact() != "spiffe://cluster.local/ns/"+other+"/sa/api" ||
		!slices.Equal(srv.GetProbePaths(), []string{"/ready"}) {
		t.Fatalf("the Server's port: %v", srv)
	}

	// Changes in another namespace that this pod's policies do not reference compile
	// nothing for it and send nothing; then a change of the authentication it does
	// reference (in that other namespace) is the next message.
	before := inboundCompilations(t)
	apply(t, fmt.Sprintf(`
apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {namespace: %[1]s, name: web-http}
spec: {podSelector: {matchLabels: {app: web}}, port: 8080, accessPolicy: all-authenticated}
---
apiVersion: policy.weft.dev/v1alpha1
kind: MeshTLSAuthentication
metadata: {namespace: %[1]s, name: unrelated}
spec: {identities: ['*']}
`, other))
	time.Sleep(300 * time.Millisecond)
	if n := inboundCompilations(t) - before; n != 0 {
		t.Errorf("changes in another namespace compiled %v policies", n)
	}
	select {
	case m := <-s.msgs:
		t.Fatalf("a change in another namespace sent %v", m)
	default:
	}
	apply(t, fmt.Sprintf(`
apiVersion: policy.weft.dev/v1alpha1
kind: MeshTLSAuthentication
metadata: {namespace: %[1]s, name: callers}
spec: {identities: ['spiffe://cluster.local/ns/%[1]s/sa/api', 'spiffe://cluster.local/ns/%[1]s/sa/batch']}
`, other))
	p2 := s.next(t)
	if got := len(policyServer(p2, 8080).GetAuthorizations()[0].GetIdentities()[0].GetMatches()); got != 2 || p2.GetVersion() == p.GetVersion() {
		t.Fatalf("after the referenced authentication changed: %d identities, version %s (was %s)", got, p2.GetVersion(), p.GetVersion())
	}

	// A second stream of the same pod gets the current policy at once.
	if p3 := watchPolicy(t, c, ns, "web-0").next(t); p3.GetVersion() != p2.GetVersion() {
		t.Fatalf("a new stream got version %s, want %s", p3.GetVersion(), p2.GetVersion())
	}

	// Deleting the pod ends the stream with NotFound (the proxy resubscribes).
	remove(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-0"}})
	if err := s.err(t); status.Code(err) != codes.NotFound {
		t.Fatalf("after the pod was deleted: %v, want NotFound", err)
	}
}

func TestInboundPolicyRefused(t *testing.T) {
	ns := namespace(t, "inbound-refused")
	apply(t, fmt.Sprintf(inboundPodYAML, ns, "web-0"))
	// Once the owner is answered the pod is known, so each refusal below is the one
	// the case names and not NotFound.
	watchKnownPolicy(t, inboundConn(t, ns, "web"), ns, "web-0").next(t)
	for _, tc := range []struct {
		name     string
		c        apigrpc.InboundPoliciesClient
		ns, pod  string
		want     codes.Code
		contains string
	}{
		{"no client certificate", inboundConn(t, "", ""), ns, "web-0", codes.Unauthenticated, ""},
		{"another ServiceAccount of the namespace", inboundConn(t, ns, "intruder"), ns, "web-0", codes.PermissionDenied, ""},
		{"another namespace's identity", inboundConn(t, "elsewhere", "web"), ns, "web-0", codes.PermissionDenied, ""},
		{"another namespace's identity, unknown pod: no existence leak", inboundConn(t, "elsewhere", "web"), ns, "nope", codes.PermissionDenied, ""},
		{"an unknown pod", inboundConn(t, ns, "web"), ns, "web-9", codes.NotFound, ""},
		{"no pod", inboundConn(t, ns, "web"), ns, "", codes.InvalidArgument, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := watchPolicy(t, tc.c, tc.ns, tc.pod).err(t)
			if status.Code(err) != tc.want {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
}

// TestInboundStreamLimit: Watch streams count against the destination service's
// per-identity stream limit, together with the identity's Get streams.
func TestInboundStreamLimit(t *testing.T) {
	pki, creds := newTestCredentials(t)
	srv := NewServer(ServerOptions{MaxStreamsPerIdentity: 3})
	inb := inbound.NewServer(inbound.ServerOptions{OpenStream: srv.OpenStream, Synced: srv.Synced})
	srv.RegisterService(inb.Register)
	inb.Handler().OnAdd(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-0"},
		Spec: corev1.PodSpec{ServiceAccountName: "web"}}, true)
	srv.MarkSynced()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served, started := make(chan error, 1), make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis, creds.serverOption(), 2*time.Second) }()
	go func() { started <- inb.Start(ctx) }()
	defer func() {
		cancel()
		<-served
		<-started
	}()
	cert, err := pki.WorkloadCert("shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := desttest.Dial(lis.Addr().String(), pki.ClientTLS(serverName, &cert))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := apigrpc.NewInboundPoliciesClient(cc)

	// One Get (a name outside the cluster: answered without state) and two Watches
	// fill the identity's three streams.
	gctx, gcancel := context.WithCancel(ctx)
	defer gcancel()
	gs, err := apigrpc.NewDestinationClient(cc).Get(gctx, auth("example.com:80"))
	if err == nil {
		_, err = gs.Recv()
	}
	if err != nil {
		t.Fatal(err)
	}
	w1, w2 := watchPolicy(t, c, "shop", "web-0"), watchPolicy(t, c, "shop", "web-0")
	w1.next(t)
	w2.next(t)
	if err := watchPolicy(t, c, "shop", "web-0").err(t); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a fourth stream: %v, want ResourceExhausted", err)
	}
	// Ending the Get frees a stream for a Watch.
	gcancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w := watchPolicy(t, c, "shop", "web-0")
		select {
		case <-w.msgs:
			return
		case err := <-w.errc:
			if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
				t.Fatalf("after a stream ended: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		case <-time.After(10 * time.Second):
			t.Fatal("no policy after a stream ended")
		}
	}
}
