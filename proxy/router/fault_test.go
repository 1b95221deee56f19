package router

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/proxy/api"
)

// TestCompileFault: what the schema refuses but a message could still carry is made
// safe: an abort status outside 400-599 answers 500 (never a success), a gRPC status
// outside 1-16 INTERNAL, a share over a million always, a delay over an hour an hour.
func TestCompileFault(t *testing.T) {
	f := compileFault(&api.Fault{Namespace: "shop", Name: "x",
		Abort: &api.FaultAbort{HttpStatus: 200, GrpcStatus: 99, PerMillion: 5_000_000},
		Delay: &api.FaultDelay{FixedDelay: durationpb.New(48 * time.Hour), PerMillion: 7}})
	if f.AbortHTTP != 500 || f.AbortGRPC != 13 || f.abortPPM != 1_000_000 || f.Delay != time.Hour || f.delayPPM != 7 {
		t.Fatalf("compiled %+v", f)
	}
	// Shares of 0 and of a million are exact, not drawn.
	for range 1000 {
		if draw(0) || !draw(1_000_000) {
			t.Fatal("a share of 0 hit, or a share of 100% missed")
		}
	}
	// No fault filter: nothing found.
	if _, found := DecideFaults([]*Filter{{Rewrite: &api.URLRewrite{}}}); found {
		t.Error("a rewrite filter was taken for a fault")
	}
	// Two faults: delays add up; the first abort answers.
	a := &Fault{Name: "a", abortPPM: 1_000_000, delayPPM: 1_000_000, Delay: time.Second}
	b := &Fault{Name: "b", abortPPM: 1_000_000, delayPPM: 1_000_000, Delay: 2 * time.Second}
	d, found := DecideFaults([]*Filter{{Fault: a}, {Fault: b}})
	if !found || d.Delay != 3*time.Second || d.Abort != a || len(d.Delayed) != 2 {
		t.Errorf("decision %+v", d)
	}
}
