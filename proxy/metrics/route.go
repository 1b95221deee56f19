package metrics

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/promtext"
)

// RouteKey identifies the per-route series (the Linkerd proxy's route_* metrics).
type RouteKey struct {
	Dir Direction
	// Authority is the destination's authority (its first configured authority, or
	// the request's when the destination has none).
	Authority string
	// Route is the route's name (rt_route): a ServiceProfile route's name, a Gateway
	// API rule's <route>/<rule>, or the fallback's ("default").
	Route string
	// Dst are the destination Service's labels (dst_namespace, dst_service), the
	// same for every endpoint: a route's series are per logical destination.
	Dst promtext.Labels
}

// SkipReason says why a retry was not made.
type SkipReason uint8

const (
	// SkipBudget: the destination's retry budget was spent.
	SkipBudget SkipReason = iota
	// SkipBody: the request body was larger than the proxy buffers for replay
	// (64 KiB), or was still being received.
	SkipBody
	skipReasons
)

func (r SkipReason) String() string {
	if r == SkipBudget {
		return "budget"
	}
	return "body"
}

// ResendReason says why a request went again to another endpoint: it certainly
// reached no application (see proxy/pipeline attempts.go). Not an application retry:
// no retry policy or budget is involved.
type ResendReason uint8

const (
	// ResendConnect: the TCP connection to the endpoint (or its proxy) was refused,
	// reset or timed out.
	ResendConnect ResendReason = iota
	// ResendHandshake: the peer proxy's TLS handshake failed.
	ResendHandshake
	// ResendRefusedStream: the peer proxy refused the HTTP/2 stream (REFUSED_STREAM).
	ResendRefusedStream
	// ResendGoAway: the peer proxy's GOAWAY excluded the stream, or the connection
	// went away before the request left.
	ResendGoAway
	// ResendPeerAppRefused: the peer proxy answered that its application refused
	// the connection (the Weft-Unprocessed field on the mesh hop).
	ResendPeerAppRefused
	resendReasons
)

func (r ResendReason) String() string {
	return [...]string{"connect", "handshake", "refused_stream", "goaway", "peer_app_refused"}[r]
}

// RouteSeries holds one route's counters: what the client asked and got (request,
// response, latency) and what the proxy sent to backends, retries included (actual).
type RouteSeries struct {
	requests, actualRequests, retries atomic.Uint64
	skipped                           [skipReasons]atomic.Uint64
	resent                            [resendReasons]atomic.Uint64
	responses
	actual responses
}

// MaxRouteSeries bounds the route series (route names come from configuration, and
// the authority from it or the request).
const MaxRouteSeries = 2000

// Route returns the series for k, creating it on first use.
func (r *Registry) Route(k RouteKey) *RouteSeries {
	r.mu.RLock()
	s := r.routes[k]
	r.mu.RUnlock()
	if s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s = r.routes[k]; s == nil && len(r.routes) >= MaxRouteSeries {
		k.Authority, k.Route, k.Dst = OverflowAuthority, OverflowAuthority, ""
		s = r.routes[k]
	}
	if s == nil {
		s = &RouteSeries{responses: newResponses(), actual: newResponses()}
		r.routes[k] = s
	}
	return s
}

// Request counts a request the route took (route_request_total).
func (s *RouteSeries) Request() { s.requests.Add(1) }

// Response counts the response the client got (route_response_total,
// route_response_latency_ms).
func (s *RouteSeries) Response(status int, failure bool, latency time.Duration) {
	s.record(status, failure, latency)
}

// Attempt counts one request sent to a backend, the first or a retry
// (route_actual_request_total).
func (s *RouteSeries) Attempt() { s.actualRequests.Add(1) }

// AttemptResponse counts one backend's answer to an attempt, before any retry
// (route_actual_response_total, route_actual_response_latency_ms).
func (s *RouteSeries) AttemptResponse(status int, failure bool, latency time.Duration) {
	s.actual.record(status, failure, latency)
}

// Retry counts a retry that was made (weft_route_retry_total).
func (s *RouteSeries) Retry() { s.retries.Add(1) }

// Skip counts a retry that was warranted but not made (weft_route_retry_skipped_total).
func (s *RouteSeries) Skip(reason SkipReason) { s.skipped[reason].Add(1) }

// Resend counts a request sent again to another endpoint because the attempt
// certainly reached no application (weft_route_unprocessed_resend_total).
func (s *RouteSeries) Resend(reason ResendReason) { s.resent[reason].Add(1) }

// Resent reads the re-send counter of reason (tests, debugging).
func (s *RouteSeries) Resent(reason ResendReason) uint64 { return s.resent[reason].Load() }

// Requests, Retries and Skipped read the counters (tests, debugging).
func (s *RouteSeries) Requests() uint64                 { return s.requests.Load() }
func (s *RouteSeries) Retries() uint64                  { return s.retries.Load() }
func (s *RouteSeries) Skipped(reason SkipReason) uint64 { return s.skipped[reason].Load() }

func (r *Registry) writeRoutes(w *promtext.Writer) {
	r.mu.RLock()
	keys := make([]RouteKey, 0, len(r.routes))
	for k := range r.routes {
		keys = append(keys, k)
	}
	r.mu.RUnlock()
	slices.SortFunc(keys, func(a, b RouteKey) int {
		return strings.Compare(fmt.Sprint(a.Dir, a.Authority, a.Route, a.Dst), fmt.Sprint(b.Dir, b.Authority, b.Route, b.Dst))
	})
	series := func(k RouteKey) *RouteSeries {
		r.mu.RLock()
		defer r.mu.RUnlock()
		return r.routes[k]
	}
	labels := make([]promtext.Labels, len(keys))
	for i, k := range keys {
		labels[i] = join(promtext.L("direction", k.Dir.String(), "authority", k.Authority, "rt_route", k.Route), k.Dst)
	}
	counter := func(name, help string, val func(*RouteSeries) uint64) {
		w.Family(name, promtext.Counter, help)
		for i, k := range keys {
			w.Uint(name, labels[i], val(series(k)))
		}
	}
	counter("route_request_total", "Total count of HTTP requests per route.", func(s *RouteSeries) uint64 { return s.requests.Load() })
	counter("route_actual_request_total", "Total count of HTTP requests sent to backends per route, retries included.", func(s *RouteSeries) uint64 { return s.actualRequests.Load() })
	w.Family("route_response_total", promtext.Counter, "Total count of HTTP responses per route.")
	for i, k := range keys {
		series(k).writeTotals(w, "route_response_total", labels[i])
	}
	w.Family("route_actual_response_total", promtext.Counter, "Total count of HTTP responses from backends per route, retried attempts included.")
	for i, k := range keys {
		series(k).actual.writeTotals(w, "route_actual_response_total", labels[i])
	}
	w.Family("route_response_latency_ms", promtext.Histogram, "Elapsed times between a request's headers being received and its response's headers being sent, per route.")
	for i, k := range keys {
		series(k).writeLatency(w, "route_response_latency_ms", labels[i])
	}
	w.Family("route_actual_response_latency_ms", promtext.Histogram, "Elapsed times of each attempt to a backend, per route.")
	for i, k := range keys {
		series(k).actual.writeLatency(w, "route_actual_response_latency_ms", labels[i])
	}
	counter("weft_route_retry_total", "Total count of retries made per route.", func(s *RouteSeries) uint64 { return s.retries.Load() })
	w.Family("weft_route_retry_skipped_total", promtext.Counter, "Total count of retries not made per route, by reason: budget (the destination's retry budget was spent) or body (the request body could not be replayed).")
	for i, k := range keys {
		s := series(k)
		for reason := range skipReasons {
			w.Uint("weft_route_retry_skipped_total", labels[i].With("reason", reason.String()), s.skipped[reason].Load())
		}
	}
	w.Family("weft_route_unprocessed_resend_total", promtext.Counter, "Total count of requests sent again to another endpoint per route because no application had seen them, by reason: connect, handshake, refused_stream, goaway, peer_app_refused. Not retries: no retry policy or budget is involved.")
	for i, k := range keys {
		s := series(k)
		for reason := range resendReasons {
			w.Uint("weft_route_unprocessed_resend_total", labels[i].With("reason", reason.String()), s.resent[reason].Load())
		}
	}
}
