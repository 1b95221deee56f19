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
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// web is the front end: each request fans out to the gRPC service and the HTTP backend
// by their Service names, so one user request becomes three meshed hops.
type web struct {
	grpc    testpb.TestServiceClient
	backend string
	client  *http.Client
	timeout time.Duration
}

// forwardedHeaders pass from the front end's request to the backend's, so a route that
// matches a header (the canary HTTPRoute) can be driven from the load generator.
var forwardedHeaders = []string{"x-canary", "x-request-id"}

// traceHeaders carry the trace context (W3C Trace Context and B3) from the front end's
// request to both its calls, as every traced application must: the proxies add spans
// and pass the context on, but only the application knows which of its outgoing calls
// belong to which incoming request (docs/tracing.md, "What applications must do").
var traceHeaders = []string{"traceparent", "tracestate", "b3",
	"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"}

func runWeb(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft-demo web", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", ":8080", "listen address")
	grpcAddr := fs.String("grpc", "grpc:8080", "gRPC service host:port (a Service name)")
	backendURL := fs.String("backend", "http://backend:8080", "HTTP backend base URL (a Service name)")
	timeout := fs.Duration("timeout", 5*time.Second, "timeout of each call to the gRPC service and the backend")
	if err := parse(fs, args); err != nil {
		return err
	}
	// The default resolver is passthrough: the Service name is resolved by the system
	// when dialling, as an unmeshed app would, and the proxy sees the ClusterIP.
	conn, err := grpc.NewClient("passthrough:///"+*grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("grpc client: %w", err)
	}
	defer conn.Close()
	w := &web{
		grpc:    testpb.NewTestServiceClient(conn),
		backend: strings.TrimSuffix(*backendURL, "/"),
		client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: idleConnTimeout}},
		timeout: *timeout,
	}
	fmt.Fprintf(stdout, "web listening on %s (grpc %s, backend %s)\n", *addr, *grpcAddr, w.backend)
	return serve(ctx, &http.Server{Addr: *addr, Handler: w, ReadHeaderTimeout: 10 * time.Second})
}

func (wb *web) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		io.WriteString(w, "ok\n")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wb.timeout)
	defer cancel()
	type result struct {
		what, detail string
		err          error
	}
	results := make(chan result, 2)
	var traceMD []string
	for _, h := range traceHeaders {
		if v := r.Header.Get(h); v != "" {
			traceMD = append(traceMD, h, v)
		}
	}
	go func() {
		ctx := ctx
		if len(traceMD) > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, traceMD...)
		}
		resp, err := wb.grpc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 64})
		if err != nil {
			results <- result{what: "grpc", err: err}
			return
		}
		results <- result{what: "grpc", detail: resp.GetHostname()}
	}()
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, wb.backend+r.URL.RequestURI(), nil)
		if err != nil {
			results <- result{what: "backend", err: err}
			return
		}
		for _, hs := range [][]string{forwardedHeaders, traceHeaders} {
			for _, h := range hs {
				if v := r.Header.Get(h); v != "" {
					req.Header.Set(h, v)
				}
			}
		}
		resp, err := wb.client.Do(req)
		if err != nil {
			results <- result{what: "backend", err: err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			results <- result{what: "backend", err: fmt.Errorf("status %d", resp.StatusCode)}
			return
		}
		w.Header().Set(HeaderVersion, resp.Header.Get(HeaderVersion))
		results <- result{what: "backend", detail: resp.Header.Get(HeaderVersion)}
	}()
	body := map[string]string{}
	status := http.StatusOK
	for range 2 {
		res := <-results
		if res.err != nil {
			status = http.StatusBadGateway
			body[res.what+"_error"] = res.err.Error()
			continue
		}
		body[res.what] = res.detail
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
