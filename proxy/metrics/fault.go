package metrics

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/weftmesh/weft/internal/promtext"
)

// FaultKind is the kind of an injected fault.
type FaultKind uint8

const (
	FaultAbort FaultKind = iota
	FaultDelay
)

func (k FaultKind) String() string {
	if k == FaultDelay {
		return "delay"
	}
	return "abort"
}

// FaultKey identifies one weft_fault_injected_total series: the HTTPFault and what it
// did. The control plane names the faults, so the series are bounded by the
// configuration, not by clients.
type FaultKey struct {
	Namespace, Name string
	Kind            FaultKind
}

// faultSeries holds the fault counters (Registry.faults).
type faultSeries struct {
	mu sync.RWMutex
	m  map[FaultKey]*atomic.Uint64
}

// Fault counts one injected fault.
func (r *Registry) Fault(k FaultKey) {
	f := &r.faults
	f.mu.RLock()
	c := f.m[k]
	f.mu.RUnlock()
	if c == nil {
		f.mu.Lock()
		if f.m == nil {
			f.m = map[FaultKey]*atomic.Uint64{}
		}
		if c = f.m[k]; c == nil {
			c = new(atomic.Uint64)
			f.m[k] = c
		}
		f.mu.Unlock()
	}
	c.Add(1)
}

func (r *Registry) writeFaults(w *promtext.Writer) {
	type entry struct {
		k FaultKey
		v uint64
	}
	f := &r.faults
	f.mu.RLock()
	es := make([]entry, 0, len(f.m))
	for k, c := range f.m {
		es = append(es, entry{k, c.Load()})
	}
	f.mu.RUnlock()
	if len(es) == 0 {
		return
	}
	slices.SortFunc(es, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.k.Namespace, b.k.Namespace), cmp.Compare(a.k.Name, b.k.Name), cmp.Compare(a.k.Kind, b.k.Kind))
	})
	const name = "weft_fault_injected_total"
	w.Family(name, promtext.Counter, "Requests an HTTPFault delayed (kind=\"delay\") or answered with an error (kind=\"abort\") in the client proxy.")
	for _, e := range es {
		w.Uint(name, promtext.L("direction", "outbound", "fault_namespace", e.k.Namespace, "fault_name", e.k.Name, "kind", e.k.Kind.String()), e.v)
	}
}
