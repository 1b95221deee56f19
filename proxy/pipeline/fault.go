package pipeline

import (
	"net/http"
	"time"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
)

// applyFaults injects a route's HTTPFaults into one outbound request, before its other
// filters: it holds the request for the faults' delay (no longer than the request's
// context allows), then answers the fault's error when one aborts it. It reports
// whether the request was answered; the caller forwards it otherwise.
func (p *Pipeline) applyFaults(w http.ResponseWriter, r *http.Request, route *router.Route, authority string, rs *metrics.RouteSeries, start time.Time) bool {
	d, ok := router.DecideFaults(route.Filters)
	if !ok {
		return false
	}
	if d.Delay > 0 {
		for _, f := range d.Delayed {
			p.o.Metrics.Fault(metrics.FaultKey{Namespace: f.Namespace, Name: f.Name, Kind: metrics.FaultDelay})
		}
		t := time.NewTimer(d.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The client went (or the route's timeout passed): nothing to answer.
			t.Stop()
			series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
			series.Request()
			w, end := p.tapOwnAnswer(w, r, route)
			p.answerError(w, r, series, rs, start, http.StatusGatewayTimeout, grpcwire.DeadlineExceeded, "request ended during an injected delay")
			end()
			return true
		}
	}
	f := d.Abort
	if f == nil {
		return false
	}
	p.o.Metrics.Fault(metrics.FaultKey{Namespace: f.Namespace, Name: f.Name, Kind: metrics.FaultAbort})
	status := f.AbortHTTP
	if status == 0 {
		status = http.StatusInternalServerError
	}
	code := grpcwire.Code(f.AbortGRPC)
	if f.AbortGRPC == 0 {
		code = grpcwire.FromHTTPStatus(status)
	}
	series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
	series.Request()
	w, end := p.tapOwnAnswer(w, r, route)
	p.answerError(w, r, series, rs, start, status, code, "fault injected by HTTPFault "+f.Namespace+"/"+f.Name)
	end()
	return true
}
