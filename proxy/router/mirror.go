package router

import (
	"fmt"
	"math/rand/v2"

	"github.com/weftmesh/weft/proxy/api"
)

// Mirror is a compiled RequestMirror filter: which backend receives copies, and
// which share of the requests.
type Mirror struct {
	// Key is the mirror backend's key; Config its configuration, nil when Invalid
	// is set.
	Key    string
	Config *api.Backend
	// Invalid says why nothing is mirrored (the backendRef did not resolve, or the
	// key names no backend of the destination).
	Invalid string
	// num/den is the share mirrored; den 0 means every request.
	num, den uint32
}

// Sample decides whether this request is copied: each mirror decides on its own,
// uniformly at random, so over many requests the share is num/den.
func (m *Mirror) Sample() bool {
	switch {
	case m.den == 0:
		return true
	case m.num == 0:
		return false
	case m.num >= m.den:
		return true
	}
	return rand.Uint32N(m.den) < m.num
}

// compileMirrors takes the RequestMirror filters of a filter list, in order, each
// resolved against the destination's backends. The other filters are compileFilters'.
func (t *Table) compileMirrors(fs []*api.Filter) []*Mirror {
	var out []*Mirror
	for _, f := range fs {
		rm := f.GetRequestMirror()
		if rm == nil {
			continue
		}
		m := &Mirror{Key: rm.GetBackend(), Invalid: rm.GetInvalid(), num: rm.GetNumerator(), den: rm.GetDenominator()}
		if m.Invalid == "" {
			m.Config = t.Backends[m.Key]
			if m.Config == nil {
				m.Invalid = fmt.Sprintf("unknown backend %q", m.Key)
			}
		}
		out = append(out, m)
	}
	return out
}
