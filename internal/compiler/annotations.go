package compiler

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/internal/validation"
	"github.com/weftmesh/weft/proxy/api"
)

// Retry and timeout annotations (retry.weft.dev/*, timeout.weft.dev/*: Linkerd's,
// under Weft's prefix; parsed by internal/validation). Precedence, per family and
// per field:
//
//  1. the route's own annotations (Linkerd: an annotation wins over the route's
//     field);
//  2. the rule's Gateway API field (HTTPRoute timeouts.request/backendRequest, and
//     retry where the experimental channel is installed);
//  3. the Service's annotations (Linkerd: any annotation of a family on the route
//     replaces that whole family of the Service's).
//
// A family with a bad value counts as absent on that object (the route's status or
// the Service's Events say which annotation); ServiceProfile routes ignore the
// annotations, as Linkerd's do.

// routeAnnotations are the annotation families that apply to one route object:
// its own, or the Service's for a family it does not set.
type routeAnnotations struct {
	retry      validation.RetryAnnotations
	retryOwn   bool // retry came from the route itself
	timeout    validation.TimeoutAnnotations
	timeoutOwn bool
}

func (c *compilation) routeAnnotations(kind string, annotations map[string]string) routeAnnotations {
	var ra routeAnnotations
	ra.retry, ra.timeout, _ = validation.RetryTimeoutAnnotations(kind, annotations)
	ra.retryOwn, ra.timeoutOwn = ra.retry.Set, ra.timeout.Set
	sr, st, _ := validation.RetryTimeoutAnnotations(validation.KindService, c.svc.Annotations)
	if !ra.retry.Set {
		ra.retry = sr
	}
	if !ra.timeout.Set {
		ra.timeout = st
	}
	return ra
}

// timeouts merges the rule's field (nil: none) with the annotations.
func (ra routeAnnotations) timeouts(field *api.Timeouts) *api.Timeouts {
	out := &api.Timeouts{}
	if field != nil {
		out.Request, out.BackendRequest = field.Request, field.BackendRequest
	}
	take := func(dst **durationpb.Duration, d *time.Duration) {
		if d != nil && (ra.timeoutOwn || *dst == nil) {
			*dst = durationpb.New(*d)
		}
	}
	take(&out.Request, ra.timeout.Request)
	take(&out.BackendRequest, ra.timeout.Response)
	take(&out.Idle, ra.timeout.Idle)
	if out.Request == nil && out.BackendRequest == nil && out.Idle == nil {
		return nil
	}
	return out
}

// retry merges the rule's field (nil: none) with the annotations.
func (ra routeAnnotations) retryPolicy(kind string, field *api.RetryPolicy) *api.RetryPolicy {
	if !ra.retry.Set || (field != nil && !ra.retryOwn) {
		return field
	}
	a := ra.retry
	p := &api.RetryPolicy{MaxAttempts: a.Limit + 1}
	if a.Timeout > 0 {
		p.Timeout = durationpb.New(a.Timeout)
	}
	for _, r := range a.HTTP {
		p.Statuses = append(p.Statuses, &api.StatusRange{Min: r.Min, Max: r.Max})
	}
	p.GrpcCodes = append(p.GrpcCodes, a.GRPC...)
	if len(p.Statuses) == 0 && len(p.GrpcCodes) == 0 {
		// Only limit or timeout given: Linkerd's proxy then retries 5xx; on a
		// GRPCRoute, UNAVAILABLE (the server did not act on the call).
		if kind == validation.KindGRPCRoute {
			p.GrpcCodes = []uint32{14}
		} else {
			p.Statuses = []*api.StatusRange{{Min: 500, Max: 599}}
		}
	}
	return p
}
