package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
	"github.com/weftmesh/weft/proxy/transport"
)

// TestDecideRetry is the retry decision's rule table: each case changes one fact of
// an attempt the policy would retry, and says what the decision is, whether the
// budget was asked (only when every check passed: a refusal for another reason must
// cost the budget nothing) and what weft_route_retry_skipped_total counts.
func TestDecideRetry(t *testing.T) {
	retryable := retryFacts{retryable: true, attempt: 1, maxAttempts: 3, bodyReplayable: true}
	with := func(change func(*retryFacts)) retryFacts {
		f := retryable
		change(&f)
		return f
	}
	noSkip := metrics.SkipReason(255)
	for _, tc := range []struct {
		name        string
		facts       retryFacts
		budgetLeft  bool
		want        retryVerdict
		wantAsked   bool
		wantSkipped metrics.SkipReason
	}{
		{"retryable, budget left", retryable, true, retryAllowed, true, noSkip},
		{"client gone", with(func(f *retryFacts) { f.clientGone, f.requestEnded = true, true }), true, noRetryClientGone, false, noSkip},
		{"request timeout", with(func(f *retryFacts) { f.requestEnded = true }), true, noRetryRequestEnded, false, noSkip},
		{"status or grpc-status not retryable", with(func(f *retryFacts) { f.retryable = false }), true, noRetryNotRetryable, false, noSkip},
		{"the retry policy's timeout ended the attempt", with(func(f *retryFacts) { f.retryable, f.retryTimedOut = false, true }), true, retryAllowed, true, noSkip},
		{"a retry timeout, but the request timed out", with(func(f *retryFacts) { f.retryTimedOut, f.requestEnded = true, true }), true, noRetryRequestEnded, false, noSkip},
		{"a retry timeout on the last attempt", with(func(f *retryFacts) { f.retryable, f.retryTimedOut, f.attempt = false, true, 3 }), true, noRetryAttemptsExhausted, false, noSkip},
		{"attempts exhausted", with(func(f *retryFacts) { f.attempt = 3 }), true, noRetryAttemptsExhausted, false, noSkip},
		{"last attempt but one", with(func(f *retryFacts) { f.attempt = 2 }), true, retryAllowed, true, noSkip},
		{"body not replayable", with(func(f *retryFacts) { f.bodyReplayable = false }), true, noRetryBodyNotReplayable, false, metrics.SkipBody},
		{"budget empty", retryable, false, noRetryBudgetEmpty, true, metrics.SkipBudget},
		{"client gone wins over an empty budget", with(func(f *retryFacts) { f.clientGone = true }), false, noRetryClientGone, false, noSkip},
		{"exhausted attempts win over a body", with(func(f *retryFacts) { f.attempt, f.bodyReplayable = 3, false }), true, noRetryAttemptsExhausted, false, noSkip},
		{"unreplayable body wins over an empty budget", with(func(f *retryFacts) { f.bodyReplayable = false }), false, noRetryBodyNotReplayable, false, metrics.SkipBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := false
			got := decideRetry(tc.facts, func() bool { asked = true; return tc.budgetLeft })
			if got != tc.want {
				t.Errorf("decision %q, want %q", got, tc.want)
			}
			if asked != tc.wantAsked {
				t.Errorf("budget asked: %v, want %v", asked, tc.wantAsked)
			}
			skipped, ok := got.skipped()
			if !ok {
				skipped = noSkip
			}
			if skipped != tc.wantSkipped {
				t.Errorf("skip reason %v (counted %v), want %v", skipped, ok, tc.wantSkipped)
			}
		})
	}
}

// TestRetryChecksAlone runs each check on the facts it owns: each refuses for its
// own fact and no other.
func TestRetryChecksAlone(t *testing.T) {
	ok := retryFacts{retryable: true, attempt: 1, maxAttempts: 2, bodyReplayable: true}
	for _, tc := range []struct {
		check  retryCheck
		refuse func(*retryFacts)
		want   retryVerdict
	}{
		{checkClientStayed, func(f *retryFacts) { f.clientGone = true }, noRetryClientGone},
		{checkRequestOpen, func(f *retryFacts) { f.requestEnded = true }, noRetryRequestEnded},
		{checkPolicyRetries, func(f *retryFacts) { f.retryable = false }, noRetryNotRetryable},
		{checkAttemptsLeft, func(f *retryFacts) { f.attempt = 2 }, noRetryAttemptsExhausted},
		{checkBodyReplayable, func(f *retryFacts) { f.bodyReplayable = false }, noRetryBodyNotReplayable},
	} {
		t.Run(tc.want.String(), func(t *testing.T) {
			if got := tc.check(ok); got != retryAllowed {
				t.Errorf("refused retryable facts: %q", got)
			}
			bad := ok
			tc.refuse(&bad)
			if got := tc.check(bad); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMaxAttempts(t *testing.T) {
	for _, tc := range []struct {
		retry *router.Retry
		want  int
	}{
		{nil, retryCap},
		{&router.Retry{}, retryCap},
		{&router.Retry{MaxAttempts: 2}, 2},
	} {
		if got := maxAttempts(&router.Route{Retry: tc.retry}); got != tc.want {
			t.Errorf("maxAttempts(%+v) = %d, want %d", tc.retry, got, tc.want)
		}
	}
}

func TestAttemptOutcome(t *testing.T) {
	grpcResp := &http.Response{StatusCode: 200, Header: http.Header{"Grpc-Status": {"14"}}}
	for _, tc := range []struct {
		name         string
		resp         *http.Response
		err          error
		deadline     bool
		wantStatus   int
		wantGRPC     int
		wantTimedOut bool
	}{
		{"response", &http.Response{StatusCode: 503, Header: http.Header{}}, nil, false, 503, router.GRPCNone, false},
		{"grpc-status in the headers", grpcResp, nil, false, 200, 14, false},
		{"no response", nil, errors.New("connection refused"), false, 502, router.GRPCNone, false},
		{"context deadline", nil, fmt.Errorf("dial: %w", context.DeadlineExceeded), false, 504, router.GRPCNone, true},
		{"the attempt's own deadline passed", nil, errors.New("stream reset"), true, 504, router.GRPCNone, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, grpc, timedOut := attemptOutcome(tc.resp, tc.err, tc.deadline)
			if status != tc.wantStatus || grpc != tc.wantGRPC || timedOut != tc.wantTimedOut {
				t.Errorf("got %d, %d, %v; want %d, %d, %v", status, grpc, timedOut, tc.wantStatus, tc.wantGRPC, tc.wantTimedOut)
			}
		})
	}
}

func TestReportFor(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	live := context.Background()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want balancerReport
	}{
		{"success", live, nil, reportOutcome},
		{"failure", live, errors.New("connection refused"), reportOutcome},
		{"client gone", cancelled, context.Canceled, reportNothing},
		{"no identity", live, fmt.Errorf("dial: %w", transport.ErrNoIdentity), reportNothing},
		{"request timeout", expired, context.DeadlineExceeded, reportLatency},
		{"request timeout after a response", expired, nil, reportOutcome},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reportFor(tc.ctx, tc.err); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPeekTrailersOnlyBody: the status of a message-less gRPC response comes from its
// trailers; a response with a message keeps every byte and is not judged.
func TestPeekTrailersOnlyBody(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		trailer  http.Header
		wantGRPC int
	}{
		{"no messages, UNAVAILABLE in the trailers", "", http.Header{"Grpc-Status": {"14"}}, 14},
		{"no messages, no status", "", http.Header{}, router.GRPCNone},
		{"a message: not judged, replayed whole", "\x00\x00\x00\x00\x03abc", http.Header{"Grpc-Status": {"14"}}, router.GRPCNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{Body: io.NopCloser(strings.NewReader(tc.body)), Trailer: tc.trailer}
			grpc, body := peekTrailersOnlyBody(resp)
			got, err := io.ReadAll(body)
			if grpc != tc.wantGRPC || err != nil || string(got) != tc.body {
				t.Errorf("got %d, body %q (%v); want %d, body %q", grpc, got, err, tc.wantGRPC, tc.body)
			}
		})
	}
}
