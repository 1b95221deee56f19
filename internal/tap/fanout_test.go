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
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/internal/tap/taptest"
	"github.com/weftmesh/weft/proxy/api"
)

// TestFanout runs the fan-out against real grpc-go tap servers over mTLS: the events
// of every pod arrive tagged with their pod, a proxy that dies mid-stream ends only its
// own part, a proxy that never completes the handshake ends its part at the connect
// deadline, and a server with another identity is refused.
func TestFanout(t *testing.T) {
	ca := taptest.NewCA(t, "identity issuer")
	a := taptest.StartTapServer(t, ca, "shop", "web")
	b := taptest.StartTapServer(t, ca, "shop", "web")
	impostor := taptest.StartTapServer(t, ca, "shop", "other-sa")
	// A "proxy" that accepts TCP and never speaks TLS.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.Close() })
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()

	f := &Fanout{Credentials: taptest.NewCreds(t, ca), ConnectTimeout: time.Second, Log: logr.Discard()}
	pods := []Pod{
		{Namespace: "shop", Name: "web-a", Addr: a.Addr, ServiceAccount: "web"},
		{Namespace: "shop", Name: "web-b", Addr: b.Addr, ServiceAccount: "web"},
		{Namespace: "shop", Name: "web-impostor", Addr: impostor.Addr, ServiceAccount: "web"},
		{Namespace: "shop", Name: "web-mute", Addr: mute.Addr().String(), ServiceAccount: "web"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan *api.TapEvent, 16)
	ends := make(chan PartEnd, len(pods))
	start := time.Now()
	wait, err := f.Start(ctx, pods, &api.ObserveRequest{MaxEventsPerSecond: 50, Match: &api.TapMatch{PathPrefix: "/api"}}, out, ends)
	if err != nil {
		t.Fatal(err)
	}

	// The impostor (a certificate for another ServiceAccount) and the mute proxy end
	// their parts with errors; the mute one at the connect deadline.
	for range 2 {
		select {
		case e := <-ends:
			switch e.Pod.Name {
			case "web-impostor":
				if e.Err == nil {
					t.Errorf("the impostor's part ended without an error; want a refused handshake")
				}
			case "web-mute":
				if e.Err == nil || !(strings.Contains(e.Err.Error(), "timed out") || strings.Contains(e.Err.Error(), "deadline exceeded")) {
					t.Errorf("the mute proxy's part ended with %v, want a connect timeout", e.Err)
				}
				if d := time.Since(start); d > 4*time.Second {
					t.Errorf("the mute proxy's part ended after %v, want within the 1s connect timeout (+1s)", d)
				}
			default:
				t.Errorf("%s ended early: %v", e.Pod.Name, e.Err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the impostor and the mute proxy did not end their parts within 5s")
		}
	}

	// Both good proxies' events arrive, tagged.
	a.Events <- taptest.RequestEvent(1, "a")
	b.Events <- taptest.RequestEvent(1, "b")
	got := map[string]string{}
	for range 2 {
		select {
		case ev := <-out:
			got[ev.GetProxy().GetPod()] = ev.GetRequestInit().GetAuthority()
		case <-time.After(5 * time.Second):
			t.Fatalf("events so far %v; want one from each good proxy within 5s", got)
		}
	}
	if got["web-a"] != "a" || got["web-b"] != "b" {
		t.Errorf("events by pod = %v, want web-a:a web-b:b", got)
	}
	if reqs := a.Requests(); len(reqs) != 1 || reqs[0].GetMatch().GetPathPrefix() != "/api" || reqs[0].GetMaxEventsPerSecond() != 50 {
		t.Errorf("proxy a received %v, want the ObserveRequest as sent", reqs)
	}

	// b dies mid-stream: its part ends, a goes on.
	b.Srv.Stop()
	select {
	case e := <-ends:
		if e.Pod.Name != "web-b" {
			t.Errorf("%s ended, want web-b", e.Pod.Name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("web-b's part did not end within 5s of its server stopping")
	}
	a.Events <- taptest.RequestEvent(2, "a")
	select {
	case ev := <-out:
		if ev.GetProxy().GetPod() != "web-a" || ev.GetId() != 2 {
			t.Errorf("after b died got %v, want web-a's event 2", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("web-a's stream stopped when web-b died")
	}

	// Cancelling the tap ends the rest cleanly.
	cancel()
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the fan-out did not end within 5s of the cancel")
	}
}
