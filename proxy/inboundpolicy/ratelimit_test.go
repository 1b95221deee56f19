package inboundpolicy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/ratelimit"
)

// TestCheckerRateLimit: the rate limit applies after authorization (a denied client
// spends no token), never to the kubelet's probes, counts what it refuses, and a new
// policy version with the same limit keeps the buckets while a changed limit does not.
func TestCheckerRateLimit(t *testing.T) {
	reg := metrics.New()
	c := &Checker{Log: logr.Discard(), Metrics: reg}
	dst := netip.MustParseAddrPort("10.1.1.1:8080")
	policy := func(version string, total uint32) *api.InboundPolicy {
		p := onePort(&api.InboundServer{
			Authorizations: []*api.Authorization{authz("only-a", nil, []*api.IdentitySet{ids(exactID(idA))})},
			ProbePaths:     []string{"/ready"},
			RateLimit:      &api.RateLimit{Ref: ref("HTTPLocalRateLimitPolicy", "limits"), Total: total},
		})
		p.Version = version
		return p
	}
	c.SetPolicy(Compile(policy("v1", 2)))
	a, b := Client{Addr: inCluster, ID: idA}, Client{Addr: inCluster, ID: idB}
	// b is denied: no token spent, however often it asks.
	for range 10 {
		if d := c.Request(get("/"), dst, b); d.Verdict != Denied {
			t.Fatalf("b: %+v, want Denied", d)
		}
	}
	// Probes: always admitted, no token spent.
	for range 10 {
		if d := c.Request(get("/ready"), dst, b); d.Verdict != Allowed {
			t.Fatalf("probe: %+v", d)
		}
	}
	for i := range 2 {
		if d := c.Request(get("/"), dst, a); d.Verdict != Allowed {
			t.Fatalf("a's request %d: %+v, want Allowed (the bucket holds 2)", i, d)
		}
	}
	d := c.Request(get("/"), dst, a)
	if d.Verdict != RateLimited || d.Limit != ratelimit.Total || d.RetryAfter <= 0 {
		t.Fatalf("a's third request: %+v, want RateLimited by the total", d)
	}
	if msg := RateLimitedMessage(d); msg != "weft-proxy: the total rate limit of policy.weft.dev/HTTPLocalRateLimitPolicy/limits on server policy.weft.dev/Server/web is exceeded; retry after 1s\n" {
		t.Errorf("message %q", msg)
	}
	var sb strings.Builder
	reg.WriteText(&sb)
	if got := sb.String(); !strings.Contains(got, `weft_inbound_http_ratelimit_rejected_total{target_addr="10.1.1.1:8080",srv_group="policy.weft.dev",srv_kind="Server",srv_name="web",route_group="",route_kind="default",route_name="default",ratelimit_group="policy.weft.dev",ratelimit_kind="HTTPLocalRateLimitPolicy",ratelimit_name="limits",tls="true",client_id="`+idA+`"} 1`) {
		t.Errorf("rejected series missing:\n%s", got)
	}
	// Same limit, new version: still empty.
	c.SetPolicy(Compile(policy("v2", 2)))
	if d := c.Request(get("/"), dst, a); d.Verdict != RateLimited {
		t.Fatalf("after a new version with the same limit: %+v, want RateLimited (buckets kept)", d)
	}
	// A changed limit starts full.
	c.SetPolicy(Compile(policy("v3", 3)))
	if d := c.Request(get("/"), dst, a); d.Verdict != Allowed {
		t.Fatalf("after the limit changed: %+v, want Allowed", d)
	}
}
