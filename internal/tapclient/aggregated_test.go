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

package tapclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/internal/tap/taptest"
	"github.com/weftmesh/weft/internal/tap/taptest/aggregated"
	"github.com/weftmesh/weft/internal/tapclient"
	"github.com/weftmesh/weft/proxy/api"
)

// startAggregated is a real kube-apiserver with the tap API aggregated into it
// (package aggregated), a Deployment shop/web whose pod's "proxy" is a real tap server,
// and a RoleBinding that lets alice tap in shop.
func startAggregated(t *testing.T) *aggregated.Env {
	e := aggregated.Start(t, "shop", "web")
	e.AddWorkload(t, "shop", "web")
	e.Bind(t, "shop", "alice")
	return e
}

// TestThroughTheAPIServer taps through a real kube-apiserver's aggregation layer:
// discovery shows the group, `kubectl auth can-i` (a SelfSubjectAccessReview) answers
// per RoleBinding, a permitted user's tap streams the proxy's events, a user without a
// RoleBinding is refused naming the permission, and a workload that does not exist
// says so.
func TestThroughTheAPIServer(t *testing.T) {
	e := startAggregated(t)
	ctx := context.Background()

	t.Run("discovery through the API server lists deployments/tap", func(t *testing.T) {
		dc, err := discovery.NewDiscoveryClientForConfig(e.Config)
		if err != nil {
			t.Fatal(err)
		}
		l, err := dc.ServerResourcesForGroupVersion("tap.weft.dev/v1alpha1")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range l.APIResources {
			found = found || (r.Name == "deployments/tap" && len(r.Verbs) == 1 && r.Verbs[0] == "watch")
		}
		if !found {
			t.Errorf("discovery %+v has no deployments/tap [watch]", l.APIResources)
		}
	})

	t.Run("kubectl auth can-i watch deployments.tap.weft.dev/tap answers per RoleBinding", func(t *testing.T) {
		for user, want := range map[string]bool{"alice": true, "bob": false} {
			uc, err := client.New(aggregated.As(e.Config, user), client.Options{Scheme: e.Client.Scheme()})
			if err != nil {
				t.Fatal(err)
			}
			// What kubectl auth can-i sends.
			ssar := &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: "shop", Verb: "watch", Group: tap.Group, Resource: "deployments", Subresource: "tap",
			}}}
			if err := uc.Create(ctx, ssar); err != nil {
				t.Fatal(err)
			}
			if ssar.Status.Allowed != want {
				t.Errorf("can-i for %s = %v, want %v", user, ssar.Status.Allowed, want)
			}
		}
	})

	t.Run("alice's tap streams the proxy's events through the API server", func(t *testing.T) {
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		got := make(chan *api.TapEvent, 1)
		errc := make(chan error, 1)
		go func() {
			errc <- aggregated.Watch(t, tctx, aggregated.As(e.Config, "alice"), tapclient.Request{Namespace: "shop", Resource: "deployments", Name: "web"},
				func(ev *api.TapEvent) error { got <- ev; return errors.New("enough") })
		}()
		// The proxy sends once the stream is open; until then the event waits in
		// its channel, so the latency measured is from the first send.
		start := time.Now()
		e.Proxy.Events <- taptest.RequestEvent(1, "web.shop.svc")
		select {
		case ev := <-got:
			t.Logf("first event through the API server after %v: %v", time.Since(start).Round(time.Millisecond), ev)
			if ev.GetProxy().GetPod() != "web-0" || ev.GetRequestInit().GetAuthority() != "web.shop.svc" {
				t.Errorf("event %v, want web.shop.svc from shop/web-0", ev)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the first event took %v, want under 2s", d)
			}
		case err := <-errc:
			t.Fatalf("Watch ended before an event: %v", err)
		case <-tctx.Done():
			t.Fatal("no event within 20s")
		}
	})

	t.Run("bob has no RoleBinding: refused, naming the permission", func(t *testing.T) {
		err := aggregated.Watch(t, ctx, aggregated.As(e.Config, "bob"), tapclient.Request{Namespace: "shop", Resource: "deployments", Name: "web"},
			func(*api.TapEvent) error { return errors.New("bob got an event") })
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "bob") || !strings.Contains(err.Error(), "deployments/tap") {
			t.Fatalf("bob's tap: %v, want Forbidden naming bob and deployments/tap", err)
		}
		t.Logf("bob: %v", err)
	})

	t.Run("a workload that does not exist says so", func(t *testing.T) {
		err := aggregated.Watch(t, ctx, aggregated.As(e.Config, "alice"), tapclient.Request{Namespace: "shop", Resource: "deployments", Name: "nope"},
			func(*api.TapEvent) error { return errors.New("got an event") })
		if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `deployment "nope" does not exist in namespace "shop"`) {
			t.Fatalf("tap of deploy/nope: %v, want NotFound naming it", err)
		}
	})
}
