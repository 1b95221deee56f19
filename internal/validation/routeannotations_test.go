package validation

import (
	"strings"
	"testing"
	"time"
)

// TestRetryTimeoutAnnotationErrors: every bad value is reported with the annotation
// it came from, and its family comes back unset (never half-applied) while the
// other family is kept.
func TestRetryTimeoutAnnotationErrors(t *testing.T) {
	for _, tc := range []struct {
		name        string
		kind        string
		ann         map[string]string
		wantErrKeys []string
		wantRetry   bool
		wantTimeout bool
	}{
		{"all valid on a Service", KindService, map[string]string{
			AnnotationRetryHTTP: "5xx", AnnotationRetryGRPC: "unavailable", AnnotationRetryLimit: "2", AnnotationRetryTimeout: "1s",
			AnnotationTimeoutRequest: "10s", AnnotationTimeoutResponse: "2s", AnnotationTimeoutIdle: "1m"}, nil, true, true},
		{"status out of range", KindHTTPRoute, map[string]string{AnnotationRetryHTTP: "600"}, []string{AnnotationRetryHTTP}, false, false},
		{"reversed range", KindHTTPRoute, map[string]string{AnnotationRetryHTTP: "504-500"}, []string{AnnotationRetryHTTP}, false, false},
		{"too many elements", KindHTTPRoute, map[string]string{AnnotationRetryHTTP: strings.Repeat("500,", 32) + "501"}, []string{AnnotationRetryHTTP}, false, false},
		{"32 elements are fine", KindHTTPRoute, map[string]string{AnnotationRetryHTTP: strings.Repeat("500,", 31) + "501"}, nil, true, false},
		{"empty element", KindHTTPRoute, map[string]string{AnnotationRetryHTTP: "5xx,,429"}, []string{AnnotationRetryHTTP}, false, false},
		{"unknown gRPC code", KindGRPCRoute, map[string]string{AnnotationRetryGRPC: "unavailable,not-found"}, []string{AnnotationRetryGRPC}, false, false},
		{"http on a GRPCRoute", KindGRPCRoute, map[string]string{AnnotationRetryHTTP: "5xx"}, []string{AnnotationRetryHTTP}, false, false},
		{"grpc on an HTTPRoute", KindHTTPRoute, map[string]string{AnnotationRetryGRPC: "internal"}, []string{AnnotationRetryGRPC}, false, false},
		{"negative limit", KindService, map[string]string{AnnotationRetryLimit: "-1"}, []string{AnnotationRetryLimit}, false, false},
		{"limit over u16", KindService, map[string]string{AnnotationRetryLimit: "65536"}, []string{AnnotationRetryLimit}, false, false},
		{"bad retry timeout keeps the timeouts", KindService, map[string]string{AnnotationRetryHTTP: "5xx", AnnotationRetryTimeout: "soon", AnnotationTimeoutRequest: "1s"},
			[]string{AnnotationRetryTimeout}, false, true},
		{"unitless duration", KindService, map[string]string{AnnotationTimeoutIdle: "30"}, []string{AnnotationTimeoutIdle}, false, false},
		{"negative duration", KindService, map[string]string{AnnotationTimeoutRequest: "-1s", AnnotationRetryLimit: "1"}, []string{AnnotationTimeoutRequest}, true, false},
		{"two bad values, two errors", KindService, map[string]string{AnnotationTimeoutRequest: "x", AnnotationTimeoutResponse: "y"},
			[]string{AnnotationTimeoutRequest, AnnotationTimeoutResponse}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			retry, to, errs := RetryTimeoutAnnotations(tc.kind, tc.ann)
			if len(errs) != len(tc.wantErrKeys) {
				t.Fatalf("errors %v, want one for each of %v", errs, tc.wantErrKeys)
			}
			for i, k := range tc.wantErrKeys {
				if !strings.Contains(errs[i].Error(), k) {
					t.Errorf("error %q does not name %s", errs[i].Error(), k)
				}
			}
			if retry.Set != tc.wantRetry || to.Set != tc.wantTimeout {
				t.Errorf("retry set %v, timeouts set %v; want %v, %v", retry.Set, to.Set, tc.wantRetry, tc.wantTimeout)
			}
			if !retry.Set && (retry.HTTP != nil || retry.GRPC != nil || retry.Timeout != 0) {
				t.Errorf("an unset retry family carries values: %+v", retry)
			}
			if !to.Set && (to.Request != nil || to.Response != nil || to.Idle != nil) {
				t.Errorf("an unset timeout family carries values: %+v", to)
			}
		})
	}
}

func TestRetryTimeoutAnnotationValues(t *testing.T) {
	retry, to, errs := RetryTimeoutAnnotations(KindService, map[string]string{
		AnnotationRetryHTTP: "gateway-error,5XX,418", AnnotationRetryGRPC: "internal, Unavailable,internal",
		AnnotationRetryLimit: "7", AnnotationRetryTimeout: "250ms", AnnotationTimeoutRequest: "0s", AnnotationTimeoutIdle: "1m30s",
	})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if want := []StatusRange{{502, 504}, {500, 599}, {418, 418}}; !equal(retry.HTTP, want) {
		t.Errorf("http %v, want %v", retry.HTTP, want)
	}
	if want := []uint32{13, 14}; !equal(retry.GRPC, want) {
		t.Errorf("grpc %v, want %v", retry.GRPC, want)
	}
	if retry.Limit != 7 || retry.Timeout != 250*time.Millisecond {
		t.Errorf("limit %d timeout %v", retry.Limit, retry.Timeout)
	}
	if to.Request == nil || *to.Request != 0 || to.Response != nil || to.Idle == nil || *to.Idle != 90*time.Second {
		t.Errorf("timeouts %+v: want request 0 (disabled), no response, idle 1m30s", to)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzRetryTimeoutAnnotations: whatever the values, the parse never panics, a
// family with an error comes back empty, and what it returns is in range.
func FuzzRetryTimeoutAnnotations(f *testing.F) {
	f.Add("5xx,gateway-error,429", "unavailable,internal", "3", "150ms", "2s")
	f.Add("500-504", "cancelled", "0", "0s", "1m30s")
	f.Add("600,,", "not-found", "-1", "5", "soon")
	f.Fuzz(func(t *testing.T, http, grpc, limit, retryTimeout, request string) {
		for _, kind := range []string{KindService, KindHTTPRoute, KindGRPCRoute} {
			retry, to, errs := RetryTimeoutAnnotations(kind, map[string]string{
				AnnotationRetryHTTP: http, AnnotationRetryGRPC: grpc, AnnotationRetryLimit: limit,
				AnnotationRetryTimeout: retryTimeout, AnnotationTimeoutRequest: request,
			})
			if len(errs) == 0 && (!retry.Set || !to.Set) {
				t.Fatalf("no errors but a family unset: %+v %+v", retry, to)
			}
			if !retry.Set && (retry.HTTP != nil || retry.GRPC != nil || retry.Timeout != 0 || retry.Limit != 0) {
				t.Fatalf("an unset retry family carries values: %+v", retry)
			}
			if len(retry.HTTP) > maxHTTPRetryElements {
				t.Fatalf("%d statuses", len(retry.HTTP))
			}
			for _, r := range retry.HTTP {
				if r.Min < 100 || r.Max > 599 || r.Min > r.Max {
					t.Fatalf("status range %+v", r)
				}
			}
			if retry.Set && (retry.Limit < 1 || retry.Limit > maxRetryLimit || retry.Timeout < 0) {
				t.Fatalf("limit %d timeout %v", retry.Limit, retry.Timeout)
			}
			if to.Request != nil && *to.Request < 0 {
				t.Fatalf("negative request timeout %v", *to.Request)
			}
		}
	})
}
