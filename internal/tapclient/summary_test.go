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
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/proxy/api"
)

// TestSummarizer: each event of a request comes out with what its earlier events said
// (the request's method and path on the end event, the status and latency after the
// response head), and the request is forgotten at its end.
func TestSummarizer(t *testing.T) {
	var s Summarizer
	grpcOK := uint32(0)
	evs := exchange("web-0", 7, "POST", "/api", 200, 1500*time.Microsecond, &grpcOK, "")
	evs[0].Source.Labels = []*api.TapLabel{{Name: "deployment", Value: "load"}, {Name: "namespace", Value: "shop"}, {Name: "pod", Value: "load-1"}}
	evs[0].Source.Identity = "spiffe://cluster.local/ns/shop/sa/load"
	var got []Summary
	for _, ev := range evs {
		sum, ok := s.Summarize(ev)
		if !ok {
			t.Fatalf("event %v has no summary", ev)
		}
		got = append(got, sum)
	}
	req, rsp, end := got[0], got[1], got[2]
	if req.Kind != "req" || req.ID != "shop/web-0:7" || req.Method != "POST" || req.Path != "/api" || !req.TLS || req.Direction != "in" ||
		req.Source.Pod != "load-1" || req.Source.Owner != "deployment/load" || req.Source.Identity != "spiffe://cluster.local/ns/shop/sa/load" {
		t.Errorf("req = %+v", req)
	}
	if rsp.Kind != "rsp" || rsp.Status != 200 || rsp.LatencyMs != 1.5 || rsp.Path != "/api" {
		t.Errorf("rsp = %+v, want status 200, latency 1.5ms and the request's path", rsp)
	}
	if end.Kind != "end" || end.Status != 200 || end.Method != "POST" || end.GRPCStatus == nil || *end.GRPCStatus != 0 || end.ResponseBytes != 123 || end.DurationMs != 2.5 {
		t.Errorf("end = %+v, want the request's fields, grpc-status 0, 123 bytes, 2.5ms", end)
	}
	if len(s.t.m) != 0 {
		t.Errorf("%d requests still tracked after their end", len(s.t.m))
	}
	if d, ok := s.Summarize(&api.TapEvent{Dropped: 9}); !ok || d.Kind != "dropped" || d.Dropped != 9 {
		t.Errorf("a drops-only event = %+v, %v; want kind dropped, 9", d, ok)
	}
	if _, ok := s.Summarize(&api.TapEvent{}); ok {
		t.Error("an empty event has a summary")
	}
}

// TestWatchRefusesPathsOutOfTheTapAPI: a namespace or name that would step out of the
// tap API's URL paths is refused before any request is sent (the server below fails
// the test if one arrives).
func TestWatchRefusesPathsOutOfTheTapAPI(t *testing.T) {
	cfg := &rest.Config{Host: "http://127.0.0.1:1"} // nothing listens: a request would fail differently
	for _, req := range []Request{
		{Namespace: "shop/../../api/v1/namespaces/kube-system/secrets", Resource: "namespaces", Name: "x"},
		{Namespace: "shop", Resource: "deployments", Name: "web/../../../pods"},
		{Namespace: "shop", Resource: "secrets", Name: "web"},
		{Namespace: "shop", Resource: "deployments", Name: ".."},
	} {
		err := Watch(context.Background(), cfg, req, func(*api.TapEvent) error { return nil })
		if !apierrors.IsBadRequest(err) {
			t.Errorf("Watch(%+v) = %v, want a BadRequest before any request", req, err)
		}
	}
}
