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

package tapclient

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/proxy/api"
)

func exchange(pod string, id uint64, method, path string, status uint32, latency time.Duration, grpc *uint32, errMsg string) []*api.TapEvent {
	proxy := &api.TapProxyRef{Namespace: "shop", Pod: pod}
	src := &api.TapPeer{Address: "10.0.0.1:5000"}
	dst := &api.TapPeer{Address: "10.0.0.2:8080"}
	base := func(ev *api.TapEvent) *api.TapEvent {
		ev.Id, ev.Proxy, ev.Source, ev.Destination, ev.Direction = id, proxy, src, dst, api.TapDirection_TAP_DIRECTION_INBOUND
		return ev
	}
	return []*api.TapEvent{
		base(&api.TapEvent{Event: &api.TapEvent_RequestInit{RequestInit: &api.TapRequestInit{Method: method, Authority: "web.shop:8080", Path: path, Tls: true}}}),
		base(&api.TapEvent{Event: &api.TapEvent_ResponseInit{ResponseInit: &api.TapResponseInit{HttpStatus: status, SinceRequestInit: durationpb.New(latency)}}}),
		base(&api.TapEvent{Event: &api.TapEvent_ResponseEnd{ResponseEnd: &api.TapResponseEnd{
			SinceRequestInit: durationpb.New(latency + time.Millisecond), SinceResponseInit: durationpb.New(50 * time.Microsecond),
			ResponseBytes: 123, GrpcStatus: grpc, Error: errMsg,
		}}}),
	}
}

// TestLineWriter: the lines of one request, as Linkerd's tap prints them, with the
// request's tls carried to its response lines.
func TestLineWriter(t *testing.T) {
	var buf bytes.Buffer
	lw := &LineWriter{W: &buf}
	for _, ev := range exchange("web-0", 7, "GET", "/api", 200, 1234*time.Microsecond, nil, "") {
		if err := lw.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	want := strings.Join([]string{
		"req id=shop/web-0:7 proxy=in src=10.0.0.1:5000 dst=10.0.0.2:8080 tls=true :method=GET :authority=web.shop:8080 :path=/api",
		"rsp id=shop/web-0:7 proxy=in src=10.0.0.1:5000 dst=10.0.0.2:8080 tls=true :status=200 latency=1234µs",
		"end id=shop/web-0:7 proxy=in src=10.0.0.1:5000 dst=10.0.0.2:8080 tls=true duration=50µs response-length=123B",
	}, "\n") + "\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
	buf.Reset()
	_ = lw.Write(&api.TapEvent{Dropped: 490})
	if !strings.HasPrefix(buf.String(), "dropped 490 events") || len(lw.t.m) != 0 {
		t.Errorf("a drops-only event printed %q and left %d tracked requests; want a dropped line and none", buf.String(), len(lw.t.m))
	}
	buf.Reset()
	lw = &LineWriter{W: &buf, JSON: true}
	_ = lw.Write(exchange("web-0", 7, "GET", "/api", 200, time.Millisecond, nil, "")[0])
	if !strings.HasPrefix(buf.String(), `{"id":"7"`) || strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("-o json line = %q, want one protojson event", buf.String())
	}
}

// TestTop: requests are counted per path when they end; success excludes 5xx, errors
// and gRPC failures; best, worst and last latency; the hottest path first.
func TestTop(t *testing.T) {
	var tp Top
	unavailable := uint32(14)
	var evs []*api.TapEvent
	for i := range 4 {
		evs = append(evs, exchange("web-0", uint64(i), "GET", "/hot", 200, time.Duration(i+1)*time.Millisecond, nil, "")...)
	}
	evs = append(evs, exchange("web-1", 0, "GET", "/hot", 503, 9*time.Millisecond, nil, "")...)
	evs = append(evs, exchange("web-1", 1, "POST", "/rpc", 200, 2*time.Millisecond, &unavailable, "")...)
	evs = append(evs, exchange("web-1", 2, "POST", "/rpc", 200, 2*time.Millisecond, nil, "reset")...)
	for _, ev := range evs {
		tp.Add(ev)
	}
	rows := tp.Rows(0)
	if len(rows) != 2 {
		t.Fatalf("rows %+v, want 2", rows)
	}
	hot, rpc := rows[0], rows[1]
	if hot.Path != "/hot" || hot.Count != 5 || hot.Success != 4 || hot.Best != time.Millisecond || hot.Worst != 9*time.Millisecond || hot.Last != 9*time.Millisecond {
		t.Errorf("/hot = %+v, want 5 requests, 4 successes, best 1ms, worst and last 9ms", hot)
	}
	if rpc.Count != 2 || rpc.Success != 0 {
		t.Errorf("/rpc = %+v, want 2 requests, 0 successes (gRPC 14, an error)", rpc)
	}
	var buf bytes.Buffer
	if err := tp.WriteTable(&buf, 10); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "80.00%") || !strings.HasPrefix(buf.String(), "METHOD") {
		t.Errorf("table:\n%s\nwant a header and /hot at 80.00%%", buf.String())
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		resource string
		name     string
		bad      bool
	}{
		{args: []string{"deploy/web"}, resource: "deployments", name: "web"},
		{args: []string{"deployment", "web"}, resource: "deployments", name: "web"},
		{args: []string{"ns/shop"}, resource: "namespaces", name: "shop"},
		{args: []string{"po/web-0"}, resource: "pods", name: "web-0"},
		{args: []string{"sts/db"}, resource: "statefulsets", name: "db"},
		{args: []string{"secret/x"}, bad: true},
		{args: []string{"web"}, bad: true},
		{args: []string{"deploy/"}, bad: true},
	} {
		r, n, err := ParseTarget(tc.args)
		if tc.bad != (err != nil) || r != tc.resource || n != tc.name {
			t.Errorf("ParseTarget(%q) = %q %q %v, want %q %q bad=%v", tc.args, r, n, err, tc.resource, tc.name, tc.bad)
		}
	}
	if w, err := WorkloadMatch("deploy/backend"); err != nil || w != "deployment/backend" {
		t.Errorf("WorkloadMatch(deploy/backend) = %q %v, want deployment/backend", w, err)
	}
}
