package transport

import (
	"errors"

	"github.com/weftmesh/weft/proxy/internal/h2"
	"github.com/weftmesh/weft/proxy/metrics"
)

// A request that no application has seen is always safe to send again, whatever its
// method: the failures below happen before any byte of it could reach the endpoint's
// application, so the pipeline sends it to another endpoint (proxy/pipeline
// attempts.go). Everything else (a reset or a closed connection after the request
// went out, a timeout waiting for the response) may have been acted on and is left to
// the route's retry policy.

// unsentError is a failure before the request left: the connection to the endpoint,
// or to the peer proxy in front of it, could not be set up.
type unsentError struct {
	reason metrics.ResendReason
	err    error
}

func (e *unsentError) Error() string { return e.err.Error() }
func (e *unsentError) Unwrap() error { return e.err }

// dialFailed marks err, the failure of a TCP connect (refused, reset or timed out),
// as one after which nothing was sent.
func dialFailed(err error) error {
	return &unsentError{reason: metrics.ResendConnect, err: err}
}

// handshakeFailed marks err, a failed TLS handshake with a peer proxy, as one after
// which nothing was sent: no application data travels before the handshake ends.
func handshakeFailed(err error) error {
	return &unsentError{reason: metrics.ResendHandshake, err: err}
}

// Unsent says whether err, returned by a transport for a request, means the request
// certainly reached no application, and why: the connection to the endpoint or its
// proxy could not be made, or the peer proxy did not process the stream (refused
// it, or excluded it by GOAWAY). Such a request may be sent to another endpoint.
func Unsent(err error) (metrics.ResendReason, bool) {
	if err == nil {
		return 0, false
	}
	var u *unsentError
	if errors.As(err, &u) {
		return u.reason, true
	}
	switch why, ok := h2.NotProcessed(err); {
	case !ok:
		return 0, false
	case why == h2.NotProcessedRefusedStream:
		return metrics.ResendRefusedStream, true
	default:
		return metrics.ResendGoAway, true
	}
}
