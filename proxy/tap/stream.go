package tap

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/proxy/api"
)

// stream is one Observe call: its filter, its rate bound and its queue.
type stream struct {
	match match
	// queue carries encoded events (shared, never written) to the stream's writer.
	queue chan []byte
	// dropped counts the events dropped since the writer last sent one.
	dropped atomic.Uint64

	// The token bucket, under mu: rate tokens a second up to burst. A request is
	// admitted while a token is left and spends, at once, a token for each of the
	// events it can send (eventsPerRequest). Spending at admission and not per
	// event keeps concurrent requests from all being admitted on the same token:
	// the bucket goes at most two events into debt, however many arrive together,
	// and the long-run rate of events stays within rate.
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newStream(m match, perSecond uint32, now time.Time) *stream {
	r := float64(perSecond)
	// A tenth of a second's worth, and at least one request's three events.
	burst := max(r/10, 3)
	return &stream{match: m, queue: make(chan []byte, queueLen), rate: r, burst: burst, tokens: burst, last: now}
}

// eventsPerSecond is a request's max_events_per_second with the default and the cap.
func eventsPerSecond(v uint32) uint32 {
	if v == 0 {
		return DefaultEventsPerSecond
	}
	return min(v, MaxEventsPerSecond)
}

// eventsPerRequest is what a request can send: its head, the response's head and
// the end.
const eventsPerRequest = 3

// admit refills the bucket and says whether a new request may be taken; a request
// taken spends its events' tokens.
func (s *stream) admit(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := now.Sub(s.last); d > 0 {
		s.tokens = min(s.burst, s.tokens+d.Seconds()*s.rate)
		s.last = now
	}
	if s.tokens < 1 {
		return false
	}
	s.tokens -= eventsPerRequest
	return true
}

// offer queues an event of an admitted request; false (and the event counted as
// dropped) when the queue is full.
func (s *stream) offer(b []byte, st *stats) bool {
	select {
	case s.queue <- b:
		return true
	default:
		s.drop(st, dropSlow)
		return false
	}
}

type dropReason int

const (
	dropRate dropReason = iota
	dropSlow
)

func (s *stream) drop(st *stats, why dropReason) {
	s.dropped.Add(1)
	st.dropped[why].Add(1)
}

// match is a compiled TapMatch.
type match struct {
	authority, pathPrefix, method string
	namespace                     string
	// workloadKind and workloadName are TapMatch.workload split at its slash.
	workloadKind, workloadName string
	direction                  api.TapDirection
}

// maxMatchField bounds each string of a TapMatch: a DNS name is at most 253 bytes,
// a path prefix worth filtering on much less than a request line.
const maxMatchField = 1024

// errInvalidMatch wraps every reason a TapMatch is refused (INVALID_ARGUMENT).
var errInvalidMatch = errors.New("invalid tap match")

// compileMatch checks m and returns the filter it describes; an unset m matches
// every request.
func compileMatch(m *api.TapMatch) (match, error) {
	var out match
	if m == nil {
		return out, nil
	}
	for _, f := range []struct{ name, v string }{{"authority", m.GetAuthority()}, {"path_prefix", m.GetPathPrefix()},
		{"method", m.GetMethod()}, {"namespace", m.GetNamespace()}, {"workload", m.GetWorkload()}} {
		if len(f.v) > maxMatchField {
			return out, fmt.Errorf("%w: %s is longer than %d bytes", errInvalidMatch, f.name, maxMatchField)
		}
	}
	if p := m.GetPathPrefix(); p != "" && !strings.HasPrefix(p, "/") {
		return out, fmt.Errorf("%w: path_prefix %q does not start with /", errInvalidMatch, p)
	}
	if w := m.GetWorkload(); w != "" {
		kind, name, ok := strings.Cut(w, "/")
		if !ok || kind == "" || name == "" || strings.Contains(name, "/") {
			return out, fmt.Errorf("%w: workload %q is not <kind>/<name> (deployment/web)", errInvalidMatch, w)
		}
		out.workloadKind, out.workloadName = strings.ToLower(kind), name
	}
	switch d := m.GetDirection(); d {
	case api.TapDirection_TAP_DIRECTION_ANY, api.TapDirection_TAP_DIRECTION_INBOUND, api.TapDirection_TAP_DIRECTION_OUTBOUND:
		out.direction = d
	default:
		return out, fmt.Errorf("%w: unknown direction %d", errInvalidMatch, d)
	}
	out.authority = m.GetAuthority()
	out.pathPrefix = m.GetPathPrefix()
	out.method = m.GetMethod()
	out.namespace = m.GetNamespace()
	return out, nil
}

// matchesRequest says whether req passes the filter's fields of the request itself.
func (m *match) matchesRequest(req *Request) bool {
	if m.direction != api.TapDirection_TAP_DIRECTION_ANY && m.direction != req.Direction {
		return false
	}
	// Host names compare without case (RFC 9110 §4.2.3).
	if m.authority != "" && !strings.EqualFold(m.authority, req.Authority) {
		return false
	}
	if m.method != "" && m.method != req.Method {
		return false
	}
	return m.pathPrefix == "" || strings.HasPrefix(req.Path, m.pathPrefix)
}

// needsLabels says whether the filter reads the labels of the request's other side.
func (m *match) needsLabels() bool { return m.namespace != "" || m.workloadKind != "" }

// matchesLabels says whether labels, those of the request's other side (the
// destination outbound, the source inbound), pass the filter. Namespace and workload
// compare with what the proxy knows of that side: a workload kind it does not know
// (an inbound client's deployment: only its identity is known) matches nothing,
// never everything.
func (m *match) matchesLabels(labels []*api.TapLabel) bool {
	if m.namespace != "" && label(labels, "namespace") != m.namespace {
		return false
	}
	return m.workloadKind == "" || label(labels, m.workloadKind) == m.workloadName
}

// matches is matchesRequest and matchesLabels.
func (m *match) matches(req *Request, labels []*api.TapLabel) bool {
	return m.matchesRequest(req) && m.matchesLabels(labels)
}

func label(labels []*api.TapLabel, name string) string {
	for _, l := range labels {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// stats are the tap's counters (weft_tap_*).
type stats struct {
	opened  atomic.Uint64
	refused [numRefusals]atomic.Uint64
	sent    atomic.Uint64
	dropped [2]atomic.Uint64
}

type refusal int

const (
	refusedLimit refusal = iota
	refusedIdentity
	refusedInvalid
	numRefusals
)
