package metrics

import (
	"cmp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/weftmesh/weft/internal/promtext"
)

// MirrorKey identifies the series of one RequestMirror target of one destination.
type MirrorKey struct {
	// Authority is the destination's (as the route series').
	Authority string
	// Backend is the mirror backend's authority (its key when it has none); "" for a mirror whose backend is
	// invalid (outcome invalid_backend).
	Backend string
}

// MirrorOutcome is what became of one request a mirror sampled.
type MirrorOutcome uint8

const (
	// MirrorSent: the copy was sent and a response head came back (any status;
	// the response is discarded).
	MirrorSent MirrorOutcome = iota
	// MirrorFailed: the copy could not be sent or its backend failed (refused,
	// reset) before a response head.
	MirrorFailed
	// MirrorTimeout: no response head within the mirror deadline.
	MirrorTimeout
	// MirrorOverloaded: not sent, the destination's (or the proxy's) mirror
	// requests in flight were at their bound.
	MirrorOverloaded
	// MirrorBodyTooLarge: not sent, the request body is larger than the proxy
	// copies for mirrors (64 KiB).
	MirrorBodyTooLarge
	// MirrorBodyIncomplete: not sent, the request body did not arrive whole (the
	// client stopped, or the primary backend answered before reading it).
	MirrorBodyIncomplete
	// MirrorNoEndpoint: not sent, the mirror backend has no endpoint to send to.
	MirrorNoEndpoint
	// MirrorInvalidBackend: not sent, the mirror's backendRef does not resolve (the
	// route's status says why).
	MirrorInvalidBackend
	// MirrorUpgrade: not sent, an Upgrade (WebSocket) request cannot be copied.
	MirrorUpgrade
	numMirrorOutcomes
)

var mirrorOutcomeNames = [numMirrorOutcomes]string{
	"sent", "failed", "timeout", "overloaded", "body_too_large", "body_incomplete",
	"no_endpoint", "invalid_backend", "upgrade",
}

func (o MirrorOutcome) String() string { return mirrorOutcomeNames[o] }

// MirrorSeries counts one mirror target's outcomes.
type MirrorSeries struct {
	outcomes [numMirrorOutcomes]atomic.Uint64
}

// Count counts one outcome.
func (s *MirrorSeries) Count(o MirrorOutcome) { s.outcomes[o].Add(1) }

// Outcome reads a counter (tests, debugging).
func (s *MirrorSeries) Outcome(o MirrorOutcome) uint64 { return s.outcomes[o].Load() }

// MaxMirrorSeries bounds the mirror series; both labels come from configuration, but
// a bound keeps the registry's memory fixed whatever the configuration holds.
const MaxMirrorSeries = 500

// Mirror returns the series for k, creating it on first use; past MaxMirrorSeries
// new keys share an overflow series.
func (r *Registry) Mirror(k MirrorKey) *MirrorSeries {
	r.mmu.RLock()
	s := r.mirrors[k]
	r.mmu.RUnlock()
	if s != nil {
		return s
	}
	r.mmu.Lock()
	defer r.mmu.Unlock()
	if r.mirrors == nil {
		r.mirrors = map[MirrorKey]*MirrorSeries{}
	}
	if s = r.mirrors[k]; s == nil && len(r.mirrors) >= MaxMirrorSeries {
		k = MirrorKey{Authority: OverflowAuthority, Backend: OverflowAuthority}
		s = r.mirrors[k]
	}
	if s == nil {
		s = &MirrorSeries{}
		r.mirrors[k] = s
	}
	return s
}

func (r *Registry) writeMirrors(w *promtext.Writer) {
	r.mmu.RLock()
	keys := make([]MirrorKey, 0, len(r.mirrors))
	series := make(map[MirrorKey]*MirrorSeries, len(r.mirrors))
	for k, s := range r.mirrors {
		keys = append(keys, k)
		series[k] = s
	}
	r.mmu.RUnlock()
	if len(keys) == 0 {
		return
	}
	slices.SortFunc(keys, func(a, b MirrorKey) int {
		return cmp.Or(strings.Compare(a.Authority, b.Authority), strings.Compare(a.Backend, b.Backend))
	})
	const name = "weft_mirror_requests_total"
	w.Family(name, promtext.Counter, "Total count of requests a RequestMirror filter sampled, by outcome: sent (a response came back and was discarded), failed, timeout, or not sent because overloaded (mirrors in flight at their bound), body_too_large (over 64 KiB), body_incomplete, no_endpoint, invalid_backend or upgrade.")
	for _, k := range keys {
		l := promtext.L("direction", Outbound.String(), "authority", k.Authority, "backend", k.Backend)
		s := series[k]
		for o := range numMirrorOutcomes {
			w.Uint(name, l.With("outcome", o.String()), s.outcomes[o].Load())
		}
	}
}
