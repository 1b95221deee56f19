package pipeline

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
	"github.com/weftmesh/weft/proxy/transport"
)

// Whether an attempt is retried, decided in small pure steps: the facts are gathered
// once after the attempt (retryFacts), each check looks at them alone and either lets
// the decision go on or ends it with its reason, and only when every check allows a
// retry is anything committed (a withdrawal from the budget). The retry policy itself
// (which statuses, how many attempts, the budget's ratio) is the route's
// (proxy/router); the loop that makes the attempts is attempts.go; the replay of the
// body is proxy/internal/replay.

// retryCap bounds the attempts of a request whose retry policy sets no
// max_attempts: the budget is the real bound, but one failing request must not be
// able to spend the whole per-second minimum on its own.
const retryCap = 10

// retryFacts is what the decision looks at, gathered once after an attempt.
type retryFacts struct {
	// clientGone: the client cancelled the request; nobody waits for a retry.
	clientGone bool
	// requestEnded: the request's own context ended (the route's request
	// timeout): no time is left for another attempt.
	requestEnded bool
	// retryable: the route's policy retries the attempt's outcome (its status,
	// grpc-status, or a failure to connect, which counts as 502).
	retryable bool
	// retryTimedOut: the retry policy's own per-attempt timeout (retry.timeout)
	// ended the attempt, which its policy retries whatever the status says.
	retryTimedOut bool
	// attempt is the number of the attempt just made (1 for the first);
	// maxAttempts the policy's bound (retryCap when it sets none).
	attempt, maxAttempts int
	// bodyReplayable: the request has no body, or one that can be sent again now
	// (kept whole, within replay.MaxBody, not being received).
	bodyReplayable bool
}

// retryVerdict is the decision: retry, or why not.
type retryVerdict uint8

const (
	retryAllowed retryVerdict = iota
	noRetryClientGone
	noRetryRequestEnded
	noRetryNotRetryable
	noRetryAttemptsExhausted
	noRetryBodyNotReplayable
	noRetryBudgetEmpty
)

func (v retryVerdict) String() string {
	return [...]string{"retry", "client gone", "request timeout", "not retryable", "attempts exhausted", "body not replayable", "budget empty"}[v]
}

// skipped is the weft_route_retry_skipped_total reason a verdict counts under, if any:
// only refusals that cost the client a retry its policy asked for are counted.
func (v retryVerdict) skipped() (metrics.SkipReason, bool) {
	switch v {
	case noRetryBodyNotReplayable:
		return metrics.SkipBody, true
	case noRetryBudgetEmpty:
		return metrics.SkipBudget, true
	}
	return 0, false
}

// retryCheck is one step of the decision: retryAllowed lets the next one look.
type retryCheck func(retryFacts) retryVerdict

// retryChecks run in order; the first that refuses decides.
var retryChecks = []retryCheck{
	checkClientStayed,
	checkRequestOpen,
	checkPolicyRetries,
	checkAttemptsLeft,
	checkBodyReplayable,
}

func checkClientStayed(f retryFacts) retryVerdict {
	if f.clientGone {
		return noRetryClientGone
	}
	return retryAllowed
}

func checkRequestOpen(f retryFacts) retryVerdict {
	if f.requestEnded {
		return noRetryRequestEnded
	}
	return retryAllowed
}

func checkPolicyRetries(f retryFacts) retryVerdict {
	if !f.retryable && !f.retryTimedOut {
		return noRetryNotRetryable
	}
	return retryAllowed
}

func checkAttemptsLeft(f retryFacts) retryVerdict {
	if f.attempt >= f.maxAttempts {
		return noRetryAttemptsExhausted
	}
	return retryAllowed
}

func checkBodyReplayable(f retryFacts) retryVerdict {
	if !f.bodyReplayable {
		return noRetryBodyNotReplayable
	}
	return retryAllowed
}

// decideRetry runs the checks, then, when they all allow a retry, withdraws from the
// retry budget: checks first, commitments last, so a retry refused for another reason
// costs the budget nothing.
func decideRetry(f retryFacts, withdraw func() bool) retryVerdict {
	for _, check := range retryChecks {
		if v := check(f); v != retryAllowed {
			return v
		}
	}
	if !withdraw() {
		return noRetryBudgetEmpty
	}
	return retryAllowed
}

// maxAttempts is the policy's bound on attempts, or retryCap.
func maxAttempts(route *router.Route) int {
	if route.Retry != nil && route.Retry.MaxAttempts > 0 {
		return route.Retry.MaxAttempts
	}
	return retryCap
}

// attemptOutcome is what one attempt's result means: the status it counts as (502
// for a failure to get a response, 504 when the attempt's own backend timeout ended
// it), its grpc-status, and whether it timed out.
func attemptOutcome(resp *http.Response, err error, attemptDeadlinePassed bool) (status, grpc int, timedOut bool) {
	status, grpc = http.StatusBadGateway, router.GRPCNone
	switch {
	case err == nil:
		status = resp.StatusCode
		if v, ok := resp.Header["Grpc-Status"]; ok && len(v) > 0 {
			grpc = router.ParseGRPCStatus(v[0])
		}
	case errors.Is(err, context.DeadlineExceeded) || attemptDeadlinePassed:
		status, timedOut = http.StatusGatewayTimeout, true
	}
	return status, grpc, timedOut
}

// peekTrailersOnlyBody finds the grpc-status of a gRPC response whose head carried
// none (a server that sent its initial metadata first): it waits for the first byte
// of the body, and when the body ends without any, the status is in the trailers,
// which are in by then. A response with a message is left to the client whatever
// its trailers will say: retrying it would need it whole, and it may be a long
// stream. The body given back replays the peeked byte.
func peekTrailersOnlyBody(resp *http.Response) (grpc int, body io.ReadCloser) {
	br := bufio.NewReaderSize(resp.Body, 16)
	body = struct {
		io.Reader
		io.Closer
	}{br, resp.Body}
	if _, err := br.Peek(1); err != io.EOF {
		return router.GRPCNone, body
	}
	if v, ok := resp.Trailer["Grpc-Status"]; ok && len(v) > 0 {
		return router.ParseGRPCStatus(v[0]), body
	}
	return router.GRPCNone, body
}

// balancerReport is what an attempt teaches the endpoint's balancer.
type balancerReport uint8

const (
	// reportNothing: nothing was learnt about the endpoint (the client left, or
	// this proxy has no certificate to reach it with): the pick is cancelled.
	reportNothing balancerReport = iota
	// reportLatency: the route's request timeout ended the attempt: the endpoint
	// was slow for this route's budget, which the latency estimate learns, but it
	// did not fail (a timeout raised later must not find it ejected).
	reportLatency
	// reportOutcome: success or failure, and the latency.
	reportOutcome
)

// reportFor chooses what an attempt that ended with err reports, given the
// request's context.
func reportFor(ctx context.Context, err error) balancerReport {
	switch {
	case ctx.Err() == context.Canceled || errors.Is(err, transport.ErrNoIdentity):
		return reportNothing
	case err != nil && ctx.Err() == context.DeadlineExceeded:
		return reportLatency
	}
	return reportOutcome
}
