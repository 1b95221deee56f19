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

package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/internal/tap/taptest"
	"github.com/weftmesh/weft/internal/tap/taptest/aggregated"
	"github.com/weftmesh/weft/internal/tapclient"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
)

// dashboardSA is the user the dashboard's in-cluster config authenticates as.
const dashboardSA = "system:serviceaccount:weft-system:weft-dashboard"

// withDashboardRBAC applies config/dashboard's ServiceAccount and RBAC to the API
// server, so the tap view runs with exactly the permissions the manifests grant.
func withDashboardRBAC(t *testing.T, e *aggregated.Env) *rest.Config {
	t.Helper()
	objs, err := testenv.Kustomize("config/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			continue
		}
		if err := e.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	// The API server's authorizer learns of new RBAC objects from its own informers,
	// a moment after they are created: wait until it grants the tap view's permission,
	// or the first tap can be refused by a rule that exists.
	deadline := time.Now().Add(10 * time.Second)
	for {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: dashboardSA,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: "shop", Verb: tap.Verb, Group: tap.Group, Resource: "deployments", Subresource: tap.Subresource, Name: "web",
			},
		}}
		if err := e.Client.Create(context.Background(), sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("config/dashboard's RBAC did not grant the tap view within 10s: %+v", sar.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return aggregated.As(e.Config, dashboardSA)
}

type sseEvent struct {
	name, data string
}

// sseStream is one open GET /api/tap/stream.
type sseStream struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
}

// openTap GETs the stream, retrying while the aggregator itself blips (its
// availability check can time out on a loaded machine). A non-200 answer comes back
// with its JSON error and no stream.
func openTap(t *testing.T, base, query string) (*sseStream, int, string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/tap/stream?"+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			var body struct {
				Error string `json:"error"`
			}
			_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
			_ = resp.Body.Close()
			cancel()
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body.Error, "v1alpha1.tap.weft.dev") && time.Now().Before(deadline) {
				t.Logf("the aggregator answered %q; retrying", body.Error)
				time.Sleep(500 * time.Millisecond)
				continue
			}
			return nil, resp.StatusCode, body.Error
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("Content-Type %q, want text/event-stream", ct)
		}
		s := &sseStream{resp: resp, cancel: cancel, events: make(chan sseEvent, 64)}
		go func() {
			defer close(s.events)
			sc := bufio.NewScanner(resp.Body)
			var ev sseEvent
			for sc.Scan() {
				line := sc.Text()
				switch {
				case line == "":
					if ev.name != "" {
						s.events <- ev
					}
					ev = sseEvent{}
				case strings.HasPrefix(line, "event: "):
					ev.name = strings.TrimPrefix(line, "event: ")
				case strings.HasPrefix(line, "data: "):
					ev.data = strings.TrimPrefix(line, "data: ")
				}
			}
		}()
		return s, http.StatusOK, ""
	}
}

func (s *sseStream) close() { s.cancel(); _ = s.resp.Body.Close() }

// next returns the next event, failing the test after 10 s; ok is false when the
// stream ended.
func (s *sseStream) next(t *testing.T) (sseEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sseEvent{}, false
}

func (s *sseStream) expect(t *testing.T, name string) sseEvent {
	t.Helper()
	ev, ok := s.next(t)
	if !ok || ev.name != name {
		t.Fatalf("got event %q (%s), stream open %v; want %q", ev.name, ev.data, ok, name)
	}
	return ev
}

// waitTaps waits until the tap API streams n taps (its weft_tap_active gauge).
func waitTaps(t *testing.T, n float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(tap.ActiveTaps) != n {
		if time.Now().After(deadline) {
			t.Fatalf("the tap API streams %v taps, want %v", testutil.ToFloat64(tap.ActiveTaps), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStreams waits until the dashboard streams no tap (its handlers end a moment
// after their browsers close).
func waitStreams(t *testing.T, ts *TapStreams) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.sem) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(ts.sem); n != 0 {
		t.Fatalf("the dashboard still counts %d streams", n)
	}
}

// TestTapStream runs the live tap view's endpoint against a real kube-apiserver with
// the tap API aggregated into it and a real proxy tap server behind it, as the
// dashboard's ServiceAccount with config/dashboard's RBAC: events arrive as SSE with
// the page's fields and the filters reach the proxy; the fifth stream is refused with
// 429; a browser that goes away ends the upstream tap; the API's refusals come back
// with its message; a tap ends after the duration bound; and a proxy that goes away
// ends the stream with an end event, not a broken connection.
func TestTapStream(t *testing.T) {
	e := aggregated.Start(t, "shop", "web")
	e.AddWorkload(t, "shop", "web")
	cfg := withDashboardRBAC(t, e)
	streams := &TapStreams{Config: cfg}
	ts := httptest.NewServer((&Server{Tap: streams}).Handler())
	defer ts.Close()

	t.Run("events stream with the page's fields; filters reach the proxy", func(t *testing.T) {
		s, code, msg := openTap(t, ts.URL, "ns=shop&target=deploy/web&path=/api&method=GET")
		if s == nil {
			t.Fatalf("%d %s", code, msg)
		}
		defer s.close()
		open := s.expect(t, "open")
		if !strings.Contains(open.data, `"maxEventsPerSecond":100`) || !strings.Contains(open.data, `"resource":"deployments"`) {
			t.Errorf("open = %s", open.data)
		}
		start := time.Now()
		ev := taptest.RequestEvent(7, "web.shop.svc")
		ev.Source = &api.TapPeer{Address: "10.0.0.9:4000", Identity: "spiffe://cluster.local/ns/shop/sa/load"}
		e.Proxy.Events <- ev
		got := s.expect(t, "tap")
		t.Logf("first row after %v: %s", time.Since(start).Round(time.Millisecond), got.data)
		var sum tapclient.Summary
		if err := json.Unmarshal([]byte(got.data), &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Kind != "req" || sum.ID != "shop/web-0:7" || sum.Authority != "web.shop.svc" || sum.Method != "GET" || !sum.TLS ||
			sum.Direction != "in" || sum.Source.Identity != "spiffe://cluster.local/ns/shop/sa/load" || sum.Proxy != "shop/web-0" {
			t.Errorf("event = %+v", sum)
		}
		reqs := e.Proxy.Requests()
		last := reqs[len(reqs)-1]
		if last.GetMatch().GetPathPrefix() != "/api" || last.GetMatch().GetMethod() != "GET" || last.GetMaxEventsPerSecond() != 100 {
			t.Errorf("the proxy was asked %v, want path /api, method GET, 100 events/s", last)
		}
	})

	t.Run("a browser that goes away ends the upstream tap", func(t *testing.T) {
		waitTaps(t, 0)
		s, code, msg := openTap(t, ts.URL, "ns=shop&target=deploy/web")
		if s == nil {
			t.Fatalf("%d %s", code, msg)
		}
		s.expect(t, "open")
		waitTaps(t, 1)
		s.close()
		waitTaps(t, 0)
		waitStreams(t, streams)
	})

	t.Run("the fifth stream gets 429", func(t *testing.T) {
		var open []*sseStream
		defer func() {
			for _, s := range open {
				s.close()
			}
		}()
		for i := range DefaultMaxTapStreams {
			s, code, msg := openTap(t, ts.URL, "ns=shop&target=deploy/web")
			if s == nil {
				t.Fatalf("stream %d: %d %s", i+1, code, msg)
			}
			s.expect(t, "open")
			open = append(open, s)
		}
		s, code, msg := openTap(t, ts.URL, "ns=shop&target=deploy/web")
		if s != nil || code != http.StatusTooManyRequests || !strings.Contains(msg, "4 taps already") {
			t.Fatalf("the fifth stream: %d %q, want 429 saying the limit", code, msg)
		}
		open[0].close()
		open = open[1:]
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, code, _ := openTap(t, ts.URL, "ns=shop&target=deploy/web")
			if s != nil {
				s.close()
				break
			}
			if code != http.StatusTooManyRequests || time.Now().After(deadline) {
				t.Fatalf("after one stream closed a new one gets %d", code)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, s := range open {
			s.close()
		}
		open = nil
		waitStreams(t, streams)
	})

	t.Run("refusals come back with the API's message", func(t *testing.T) {
		for _, c := range []struct {
			query string
			code  int
			want  string
		}{
			{"ns=shop&target=deploy/nope", http.StatusNotFound, `deployment "nope" does not exist in namespace "shop"`},
			{"ns=shop&target=secret/x", http.StatusBadRequest, "cannot be tapped"},
			{"ns=shop/../../api&target=deploy/web", http.StatusBadRequest, "not a valid namespace name"},
			{"ns=shop&target=deploy/web&path=api", http.StatusBadRequest, "must start with /"},
			{"target=deploy/web", http.StatusBadRequest, "say which namespace"},
		} {
			s, code, msg := openTap(t, ts.URL, c.query)
			if s != nil {
				s.close()
			}
			if code != c.code || !strings.Contains(msg, c.want) {
				t.Errorf("%s: %d %q, want %d with %q", c.query, code, msg, c.code, c.want)
			}
		}
		// Without the tap rule of config/dashboard the API server refuses, naming the
		// permission.
		nobody := httptest.NewServer((&Server{Tap: &TapStreams{Config: aggregated.As(e.Config, "nobody")}}).Handler())
		defer nobody.Close()
		s, code, msg := openTap(t, nobody.URL, "ns=shop&target=deploy/web")
		if s != nil {
			s.close()
		}
		if code != http.StatusForbidden || !strings.Contains(msg, "deployments/tap") {
			t.Errorf("a dashboard without RBAC: %d %q, want 403 naming deployments/tap", code, msg)
		}
		off := httptest.NewServer((&Server{}).Handler())
		defer off.Close()
		if s, code, msg := openTap(t, off.URL, "ns=shop&target=deploy/web"); s != nil || code != http.StatusNotFound || !strings.Contains(msg, "--tap=false") {
			t.Errorf("with the view off: %d %q, want 404 naming --tap=false", code, msg)
		}
	})

	t.Run("another site's page cannot open a tap or read a page", func(t *testing.T) {
		for name, set := range map[string]func(*http.Request){
			"DNS rebinding": func(r *http.Request) { r.Host = "evil.example:50750" },
			"cross-site":    func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") },
		} {
			// The JSON pages and the page itself too: they name every workload and
			// identity of the mesh.
			for _, path := range []string{"/api/tap/stream?ns=shop&target=deploy/web", "/api/namespaces", "/"} {
				req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
				set(req)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "answers only") {
					t.Errorf("%s %s: %d %s, want 403", name, path, resp.StatusCode, b)
				}
			}
		}
	})

	t.Run("a tap ends after the duration bound, past the server's WriteTimeout", func(t *testing.T) {
		// The server's WriteTimeout (weft-dashboard's is 30 s, for the JSON pages) is
		// shorter than the tap here: each write of the stream sets its own deadline.
		short := httptest.NewUnstartedServer((&Server{Tap: &TapStreams{Config: cfg, MaxDuration: 2 * time.Second}}).Handler())
		short.Config.WriteTimeout = time.Second
		short.Start()
		defer short.Close()
		s, code, msg := openTap(t, short.URL, "ns=shop&target=deploy/web")
		if s == nil {
			t.Fatalf("%d %s", code, msg)
		}
		defer s.close()
		s.expect(t, "open")
		end := s.expect(t, "end")
		if !strings.Contains(end.data, "after 2s") {
			t.Errorf("end = %s", end.data)
		}
		if _, ok := s.next(t); ok {
			t.Error("the stream goes on after its end event")
		}
		waitTaps(t, 0)
	})

	t.Run("a browser that stops reading ends the upstream tap", func(t *testing.T) {
		stall := httptest.NewServer((&Server{Tap: &TapStreams{Config: cfg, EventsPerSecond: 1000, WriteTimeout: time.Second}}).Handler())
		defer stall.Close()
		waitTaps(t, 0)
		// A client that sends the request and never reads, with a small receive
		// buffer, as a stalled tab is.
		conn, err := net.Dial("tcp", stall.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.(*net.TCPConn).SetReadBuffer(4096)
		if _, err := fmt.Fprintf(conn, "GET /api/tap/stream?ns=shop&target=deploy/web HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		waitTaps(t, 1)
		// 4 KiB events at up to 1,000 a second fill the socket buffers quickly.
		ctx, cancel := context.WithCancel(context.Background())
		pumped := make(chan struct{})
		go func() {
			defer close(pumped)
			big := "/" + strings.Repeat("x", 4096)
			for id := uint64(100); ctx.Err() == nil; id++ {
				ev := taptest.RequestEvent(id, "web.shop.svc")
				ev.GetRequestInit().Path = big
				select {
				case e.Proxy.Events <- ev:
				case <-ctx.Done():
				}
			}
		}()
		// The dashboard's 1 s write deadline ends it, well before the tap API's own
		// (10 s, on its writes to the API server, which buffers).
		start := time.Now()
		deadline := time.Now().Add(5 * time.Second)
		for testutil.ToFloat64(tap.ActiveTaps) != 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		<-pumped
		for len(e.Proxy.Events) > 0 {
			<-e.Proxy.Events
		}
		if n := testutil.ToFloat64(tap.ActiveTaps); n != 0 {
			t.Fatalf("the tap API still streams %v taps 5s after the events began to pile up for a browser that does not read", n)
		}
		t.Logf("the upstream tap ended %v after the events began to pile up", time.Since(start).Round(time.Millisecond))
	})

	t.Run("a proxy that goes away ends the stream with an end event", func(t *testing.T) {
		s, code, msg := openTap(t, ts.URL, "ns=shop&target=deploy/web")
		if s == nil {
			t.Fatalf("%d %s", code, msg)
		}
		defer s.close()
		s.expect(t, "open")
		waitTaps(t, 1)
		e.Proxy.Events <- taptest.RequestEvent(8, "web.shop.svc")
		s.expect(t, "tap")
		e.Proxy.Srv.Stop()
		end := s.expect(t, "end")
		if !strings.Contains(end.data, "no proxy of the workload is streaming") {
			t.Errorf("end = %s", end.data)
		}
		if ev, ok := s.next(t); ok {
			t.Errorf("after the end event: %s %s", ev.name, ev.data)
		}
	})
}
