package compiler

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/proxy/api"
)

// TestCompileRetryTimeoutAnnotations is the table of retry.weft.dev/* and
// timeout.weft.dev/* (Linkerd's annotations under Weft's prefix): each annotation's
// value, where it may be set, and the precedence route annotation > rule field >
// Service annotation. Each case says what the first route (or, without routes, the
// fallback) of shop/web carries.
func TestCompileRetryTimeoutAnnotations(t *testing.T) {
	d := func(s string) *durationpb.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return durationpb.New(v)
	}
	statuses := func(pairs ...uint32) []*api.StatusRange {
		var out []*api.StatusRange
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, &api.StatusRange{Min: pairs[i], Max: pairs[i+1]})
		}
		return out
	}
	// One HTTPRoute rule, optionally with the Gateway API fields, annotated.
	withHTTP := func(ann map[string]string, rule gatewayv1.HTTPRouteRule) func(s *State) {
		return func(s *State) {
			r := httpRoute("shop", "r", 0, web, rule)
			r.Annotations = ann
			s.HTTPRoutes = []gatewayv1.HTTPRoute{r}
		}
	}
	withGRPC := func(ann map[string]string) func(s *State) {
		return func(s *State) {
			r := grpcRoute("shop", "g", web, gatewayv1.GRPCRouteRule{})
			r.Annotations = ann
			s.GRPCRoutes = []gatewayv1.GRPCRoute{r}
		}
	}
	svcAnn := func(ann map[string]string, then ...func(s *State)) func(s *State) {
		return func(s *State) {
			s.Services[0].Annotations = ann
			for _, f := range then {
				f(s)
			}
		}
	}
	fieldTimeouts := gatewayv1.HTTPRouteRule{Timeouts: &gatewayv1.HTTPRouteTimeouts{
		Request: ptr.To(gatewayv1.Duration("10s")), BackendRequest: ptr.To(gatewayv1.Duration("3s"))}}
	fieldRetry := gatewayv1.HTTPRouteRule{Retry: &gatewayv1.HTTPRouteRetry{
		Codes: []gatewayv1.HTTPRouteRetryStatusCode{503}, Attempts: ptr.To(4)}}

	for _, tc := range []struct {
		name         string
		state        func(s *State)
		wantTimeouts *api.Timeouts
		wantRetry    *api.RetryPolicy
	}{
		{name: "no annotations: nothing", state: withHTTP(nil, gatewayv1.HTTPRouteRule{})},
		{
			name:      "retry http: 5xx, gateway-error, a code and a range; limit 1 by default",
			state:     withHTTP(map[string]string{"retry.weft.dev/http": "5xx, gateway-error,429,400-403"}, gatewayv1.HTTPRouteRule{}),
			wantRetry: &api.RetryPolicy{Statuses: statuses(500, 599, 502, 504, 429, 429, 400, 403), MaxAttempts: 2},
		},
		{
			name:      "retry limit counts retries: 3 means 4 attempts",
			state:     withHTTP(map[string]string{"retry.weft.dev/http": "503", "retry.weft.dev/limit": "3"}, gatewayv1.HTTPRouteRule{}),
			wantRetry: &api.RetryPolicy{Statuses: statuses(503, 503), MaxAttempts: 4},
		},
		{
			name:      "retry limit 0 is Linkerd's unset: one retry",
			state:     withHTTP(map[string]string{"retry.weft.dev/http": "503", "retry.weft.dev/limit": "0"}, gatewayv1.HTTPRouteRule{}),
			wantRetry: &api.RetryPolicy{Statuses: statuses(503, 503), MaxAttempts: 2},
		},
		{
			name:      "retry timeout alone: 5xx, one retry, a retryable per-attempt timeout",
			state:     withHTTP(map[string]string{"retry.weft.dev/timeout": "150ms"}, gatewayv1.HTTPRouteRule{}),
			wantRetry: &api.RetryPolicy{Statuses: statuses(500, 599), MaxAttempts: 2, Timeout: d("150ms")},
		},
		{
			name:      "retry grpc on a GRPCRoute: the codes, sorted",
			state:     withGRPC(map[string]string{"retry.weft.dev/grpc": "unavailable,cancelled,internal,resource-exhausted,deadline-exceeded", "retry.weft.dev/limit": "2"}),
			wantRetry: &api.RetryPolicy{GrpcCodes: []uint32{1, 4, 8, 13, 14}, MaxAttempts: 3},
		},
		{
			name:      "GRPCRoute with only a limit retries UNAVAILABLE",
			state:     withGRPC(map[string]string{"retry.weft.dev/limit": "2"}),
			wantRetry: &api.RetryPolicy{GrpcCodes: []uint32{14}, MaxAttempts: 3},
		},
		{
			name:         "GRPCRoute timeouts: request, response, idle",
			state:        withGRPC(map[string]string{"timeout.weft.dev/request": "2s", "timeout.weft.dev/response": "1s", "timeout.weft.dev/idle": "30s"}),
			wantTimeouts: &api.Timeouts{Request: d("2s"), BackendRequest: d("1s"), Idle: d("30s")},
		},
		{
			name:  "retry http on a GRPCRoute is invalid: the retry family is ignored whole",
			state: withGRPC(map[string]string{"retry.weft.dev/http": "5xx", "retry.weft.dev/limit": "3", "timeout.weft.dev/request": "2s"}),
			// The timeout family is valid and still applies.
			wantTimeouts: &api.Timeouts{Request: d("2s")},
		},
		{
			name:  "retry grpc on an HTTPRoute is invalid",
			state: withHTTP(map[string]string{"retry.weft.dev/grpc": "unavailable"}, gatewayv1.HTTPRouteRule{}),
		},
		{
			name:  "a bad value ignores its whole family, never half of it",
			state: withHTTP(map[string]string{"retry.weft.dev/http": "5xx", "retry.weft.dev/limit": "many"}, gatewayv1.HTTPRouteRule{}),
		},
		{
			name:  "a duration without a unit is refused, like Linkerd",
			state: withHTTP(map[string]string{"timeout.weft.dev/request": "5", "timeout.weft.dev/idle": "1m"}, gatewayv1.HTTPRouteRule{}),
		},
		{
			name:         "Gateway API timeouts alone",
			state:        withHTTP(nil, fieldTimeouts),
			wantTimeouts: &api.Timeouts{Request: d("10s"), BackendRequest: d("3s")},
		},
		{
			name:         "the route's annotation wins over its field",
			state:        withHTTP(map[string]string{"timeout.weft.dev/request": "2s", "timeout.weft.dev/idle": "5s"}, fieldTimeouts),
			wantTimeouts: &api.Timeouts{Request: d("2s"), BackendRequest: d("3s"), Idle: d("5s")},
		},
		{
			name:         "the field wins over the Service's annotation, which fills the rest",
			state:        svcAnn(map[string]string{"timeout.weft.dev/request": "1s", "timeout.weft.dev/idle": "7s"}, withHTTP(nil, fieldTimeouts)),
			wantTimeouts: &api.Timeouts{Request: d("10s"), BackendRequest: d("3s"), Idle: d("7s")},
		},
		{
			name: "any timeout annotation on the route replaces the Service's whole family",
			state: svcAnn(map[string]string{"timeout.weft.dev/request": "1s", "timeout.weft.dev/idle": "7s"},
				withHTTP(map[string]string{"timeout.weft.dev/response": "500ms"}, gatewayv1.HTTPRouteRule{})),
			wantTimeouts: &api.Timeouts{BackendRequest: d("500ms")},
		},
		{
			name: "the Service's retry applies to a route without retry annotations",
			state: svcAnn(map[string]string{"retry.weft.dev/http": "gateway-error", "retry.weft.dev/limit": "2"},
				withHTTP(map[string]string{"timeout.weft.dev/request": "1s"}, gatewayv1.HTTPRouteRule{})),
			wantTimeouts: &api.Timeouts{Request: d("1s")},
			wantRetry:    &api.RetryPolicy{Statuses: statuses(502, 504), MaxAttempts: 3},
		},
		{
			name: "the route's retry annotations replace the Service's",
			state: svcAnn(map[string]string{"retry.weft.dev/http": "gateway-error", "retry.weft.dev/limit": "2"},
				withHTTP(map[string]string{"retry.weft.dev/http": "429"}, gatewayv1.HTTPRouteRule{})),
			wantRetry: &api.RetryPolicy{Statuses: statuses(429, 429), MaxAttempts: 2},
		},
		{
			name: "a bad route retry family falls back to the Service's",
			state: svcAnn(map[string]string{"retry.weft.dev/http": "gateway-error"},
				withHTTP(map[string]string{"retry.weft.dev/http": "6xx"}, gatewayv1.HTTPRouteRule{})),
			wantRetry: &api.RetryPolicy{Statuses: statuses(502, 504), MaxAttempts: 2},
		},
		{
			name:      "the route's retry annotations win over the GEP-1731 field",
			state:     withHTTP(map[string]string{"retry.weft.dev/http": "429"}, fieldRetry),
			wantRetry: &api.RetryPolicy{Statuses: statuses(429, 429), MaxAttempts: 2},
		},
		{
			name:      "the GEP-1731 field wins over the Service's retry annotations",
			state:     svcAnn(map[string]string{"retry.weft.dev/http": "5xx"}, withHTTP(nil, fieldRetry)),
			wantRetry: &api.RetryPolicy{Statuses: statuses(503, 503), MaxAttempts: 5},
		},
		{
			name: "no routes: the Service's annotations configure the fallback (HTTP and gRPC codes)",
			state: svcAnn(map[string]string{"retry.weft.dev/http": "503", "retry.weft.dev/grpc": "unavailable",
				"retry.weft.dev/timeout": "1s", "timeout.weft.dev/request": "4s"}),
			wantTimeouts: &api.Timeouts{Request: d("4s")},
			wantRetry:    &api.RetryPolicy{Statuses: statuses(503, 503), GrpcCodes: []uint32{14}, MaxAttempts: 2, Timeout: d("1s")},
		},
		{
			name: "a ServiceProfile replaces the Service's annotations, as in Linkerd",
			state: svcAnn(map[string]string{"retry.weft.dev/http": "503", "timeout.weft.dev/request": "4s"}, func(s *State) {
				s.ServiceProfiles = []meshv1alpha1.ServiceProfile{profile("shop", meshv1alpha1.ServiceProfileSpec{})}
			}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture()
			tc.state(s)
			got, err := Compile(s, Target{Namespace: "shop", Name: "web", Port: 80})
			if err != nil {
				t.Fatal(err)
			}
			r := got.GetFallback()
			if len(got.GetRoutes()) > 0 {
				r = got.GetRoutes()[0]
			}
			if diff := cmp.Diff(tc.wantTimeouts, r.GetTimeouts(), protocmp.Transform()); diff != "" {
				t.Errorf("timeouts (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRetry, r.GetRetry(), protocmp.Transform()); diff != "" {
				t.Errorf("retry (-want +got):\n%s", diff)
			}
		})
	}
}
