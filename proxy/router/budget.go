package router

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/proxy/api"
)

// budgetSlots is how many slots the budget's window is cut into: the window slides
// by ttl/budgetSlots.
const budgetSlots = 10

// Budget bounds the retries of one destination: within the last ttl, retries may add
// at most ratio × the original requests, plus minPerSecond × ttl. Originals are
// counted lock-free (an atomic add on the current slot); a retry takes a small lock
// so that concurrent retries cannot overdraw the budget together.
type Budget struct {
	ratio float64
	min   float64 // retries always allowed per window: minPerSecond × ttl
	slot  int64   // ns
	now   func() time.Time

	mu    sync.Mutex
	slots [budgetSlots]budgetSlot
}

type budgetSlot struct {
	epoch     atomic.Int64
	originals atomic.Int64
	retries   atomic.Int64
}

// NewBudget compiles a retry budget; a nil one means the defaults (20%, 10/s, 10s).
// now is the clock (nil: time.Now).
func NewBudget(b *api.RetryBudget, now func() time.Time) *Budget {
	ratio, minPS, ttl := 0.2, 10.0, 10*time.Second
	if b != nil {
		ratio = float64(b.GetRetryRatio())
		minPS = float64(b.GetMinRetriesPerSecond())
		if d := b.GetTtl().AsDuration(); b.GetTtl() != nil && d > 0 {
			ttl = d
		}
	}
	if now == nil {
		now = time.Now
	}
	slot := max(int64(ttl)/budgetSlots, 1)
	return &Budget{ratio: ratio, min: minPS * ttl.Seconds(), slot: slot, now: now}
}

// Same reports whether b was made from an equal configuration, so the proxy can keep
// its counts across configuration versions.
func (b *Budget) Same(o *api.RetryBudget) bool {
	n := NewBudget(o, b.now)
	return n.ratio == b.ratio && n.min == b.min && n.slot == b.slot
}

func (b *Budget) current() *budgetSlot {
	e := b.now().UnixNano() / b.slot
	s := &b.slots[e%budgetSlots]
	if old := s.epoch.Load(); old != e && s.epoch.CompareAndSwap(old, e) {
		// The slot is reused for a new period. A count racing with this reset may be
		// lost; the budget is an estimate either way.
		s.originals.Store(0)
		s.retries.Store(0)
	}
	return s
}

// Deposit counts one original request.
func (b *Budget) Deposit() { b.current().originals.Add(1) }

// Withdraw takes one retry from the budget; false when it is spent (the retry must
// not be made).
func (b *Budget) Withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.current()
	origs, retries := b.window()
	if float64(retries+1) > b.ratio*float64(origs)+b.min {
		return false
	}
	cur.retries.Add(1)
	return true
}

// window sums the slots of the last ttl.
func (b *Budget) window() (originals, retries int64) {
	e := b.now().UnixNano() / b.slot
	for i := range b.slots {
		s := &b.slots[i]
		if ep := s.epoch.Load(); ep > e-budgetSlots && ep <= e {
			originals += s.originals.Load()
			retries += s.retries.Load()
		}
	}
	return originals, retries
}

// Allowed is how many retries the window allows in total right now (for tests and
// debugging).
func (b *Budget) Allowed() float64 {
	origs, _ := b.window()
	return b.ratio*float64(origs) + b.min
}
