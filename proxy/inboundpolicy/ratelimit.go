package inboundpolicy

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/ratelimit"
)

// Limit is a port's compiled rate limit (InboundServer.rate_limit): the limiter, and
// the policy it comes from for the metrics and the 429's body.
type Limit struct {
	Ref Ref
	// msg is what the limiter was built from: a new policy whose port has an equal
	// message keeps the limiter, so that an unrelated policy change (another
	// port, an authorization) does not refill every bucket.
	msg     *api.RateLimit
	limiter *ratelimit.Limiter
}

func compileLimit(rl *api.RateLimit) *Limit {
	if rl == nil || (rl.GetTotal() == 0 && rl.GetIdentity() == 0 && len(rl.GetOverrides()) == 0) {
		return nil
	}
	cfg := ratelimit.Config{Total: rl.GetTotal(), Identity: rl.GetIdentity()}
	for _, o := range rl.GetOverrides() {
		cfg.Overrides = append(cfg.Overrides, ratelimit.OverrideConfig{Rate: o.GetRequestsPerSecond(), IDs: o.GetIds()})
	}
	return &Limit{Ref: refOf(rl.GetRef()), msg: rl, limiter: ratelimit.New(cfg)}
}

// inheritLimits makes p's ports keep the limiters of prev's ports where their rate
// limit is the same, before p is installed.
func (p *Policy) inheritLimits(prev *Policy) {
	if prev == nil {
		return
	}
	for port, s := range p.servers {
		old := prev.servers[port]
		if s.limit != nil && old != nil && old.limit != nil && proto.Equal(s.limit.msg, old.limit.msg) {
			s.limit = old.limit
		}
	}
}

// RateLimit spends a request of client id ("" without a verified identity) from the
// server's rate limit: ok when no limit refuses it; otherwise the scope that refused
// it and how long until it would not.
func (s *Server) RateLimit(id string) (refused ratelimit.Scope, retryAfter time.Duration) {
	if s.limit == nil {
		return ratelimit.Admitted, 0
	}
	return s.limit.limiter.Allow(id)
}
