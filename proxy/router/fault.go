package router

import (
	"math/rand/v2"
	"time"

	"github.com/weftmesh/weft/proxy/api"
)

// Fault is a compiled HTTPFault (api.Fault): a share of the requests delayed, and a
// share answered with an error instead of forwarded, drawn independently per request.
type Fault struct {
	Namespace, Name string
	// abortPPM and delayPPM are the shares in parts per million; 0: never.
	abortPPM, delayPPM uint32
	// AbortHTTP and AbortGRPC are the answer of an abort (0: unset).
	AbortHTTP, AbortGRPC int
	Delay                time.Duration
}

func compileFault(f *api.Fault) *Fault {
	out := &Fault{Namespace: f.GetNamespace(), Name: f.GetName()}
	if a := f.GetAbort(); a != nil {
		out.abortPPM = min(a.GetPerMillion(), 1_000_000)
		out.AbortHTTP, out.AbortGRPC = int(a.GetHttpStatus()), int(a.GetGrpcStatus())
		if out.AbortHTTP != 0 && (out.AbortHTTP < 400 || out.AbortHTTP > 599) {
			// The schema admits 400-599 only; anything else is answered as an
			// error all the same, never as a success the client would trust.
			out.AbortHTTP = 500
		}
		if out.AbortGRPC < 0 || out.AbortGRPC > 16 {
			out.AbortGRPC = 13 // INTERNAL
		}
	}
	if d := f.GetDelay(); d != nil && d.GetFixedDelay().AsDuration() > 0 {
		out.delayPPM = min(d.GetPerMillion(), 1_000_000)
		// Bounded as the schema bounds it: a delay is a wait the proxy holds a
		// request for.
		out.Delay = min(d.GetFixedDelay().AsDuration(), time.Hour)
	}
	return out
}

// FaultDecision is what a fault does to one request.
type FaultDecision struct {
	// Delayed are the faults that delay the request, Delay the sum of their delays.
	Delayed []*Fault
	Delay   time.Duration
	// Abort, when set, is the fault whose error answers the request instead of
	// forwarding it.
	Abort *Fault
}

// draw says whether a share of ppm parts per million hits.
func draw(ppm uint32) bool {
	return ppm >= 1_000_000 || (ppm > 0 && rand.Uint32N(1_000_000) < ppm)
}

// DecideFaults draws the faults of fs for one request: the delays of every fault add
// up, and the first fault that aborts answers. found is false when no filter is a fault.
func DecideFaults(fs []*Filter) (d FaultDecision, found bool) {
	for _, f := range fs {
		ft := f.Fault
		if ft == nil {
			continue
		}
		found = true
		if draw(ft.delayPPM) {
			d.Delay += ft.Delay
			d.Delayed = append(d.Delayed, ft)
		}
		if d.Abort == nil && draw(ft.abortPPM) {
			d.Abort = ft
		}
	}
	return d, found
}

// HasFaults reports whether any filter of fs is a fault.
func HasFaults(fs []*Filter) bool {
	for _, f := range fs {
		if f.Fault != nil {
			return true
		}
	}
	return false
}
