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

package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// mdServer is a gRPC test service that hands over the metadata of each call.
type mdServer struct {
	testpb.UnimplementedTestServiceServer
	got chan metadata.MD
}

func (s *mdServer) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.got <- md
	return &testpb.SimpleResponse{Hostname: "test"}, nil
}

// TestWebPropagatesTraceContext: the front end passes the trace context of its request
// (W3C and B3) to both of its calls, so the proxies' spans of one user request form one
// trace (load -> web -> grpc and backend); a request without one adds none.
func TestWebPropagatesTraceContext(t *testing.T) {
	gotHTTP := make(chan http.Header, 2)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHTTP <- r.Header.Clone()
	}))
	defer backend.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	md := &mdServer{got: make(chan metadata.MD, 2)}
	testpb.RegisterTestServiceServer(gs, md)
	go func() { _ = gs.Serve(l) }()
	defer gs.Stop()
	webAddr := freeAddr(t)
	start(t, "web", "--addr", webAddr, "--grpc", l.Addr().String(), "--backend", backend.URL)
	waitHTTP(t, "http://"+webAddr+"/healthz")

	trace := map[string]string{
		"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":   "vendor=opaque",
		"b3":           "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
		"x-b3-traceid": "4bf92f3577b34da6a3ce929d0e0e4736",
		"x-b3-spanid":  "00f067aa0ba902b7",
		"x-b3-sampled": "1",
	}
	get := func(headers map[string]string) (http.Header, metadata.MD) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+webAddr+"/books/1", nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return <-gotHTTP, <-md.got
	}
	h, m := get(trace)
	for k, v := range trace {
		if got := h.Get(k); got != v {
			t.Errorf("backend call: %s = %q, want %q", k, got, v)
		}
		if got := m.Get(k); len(got) != 1 || got[0] != v {
			t.Errorf("gRPC call: %s = %q, want %q", k, got, v)
		}
	}
	h, m = get(nil)
	for k := range trace {
		if h.Get(k) != "" || len(m.Get(k)) != 0 {
			t.Errorf("a request without trace context: %s appears (HTTP %q, gRPC %q)", k, h.Get(k), m.Get(k))
		}
	}
}
