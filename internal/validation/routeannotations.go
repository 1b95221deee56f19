/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package validation

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Linkerd's retry and timeout annotations (retry.linkerd.io/*, timeout.linkerd.io/*)
// under Weft's prefix, with Linkerd's names, values and defaults. They may be set on
// a Service, an HTTPRoute or a GRPCRoute; the compiler decides which applies
// (docs/routing.md, "Retry and timeout annotations"). Each family (retry.*, timeout.*)
// is taken whole or not at all: one bad value makes the family on that object count
// as absent, and the error names the annotation, so nothing is half-applied.
const (
	AnnotationRetryHTTP       = "retry.weft.dev/http"
	AnnotationRetryGRPC       = "retry.weft.dev/grpc"
	AnnotationRetryLimit      = "retry.weft.dev/limit"
	AnnotationRetryTimeout    = "retry.weft.dev/timeout"
	AnnotationTimeoutRequest  = "timeout.weft.dev/request"
	AnnotationTimeoutResponse = "timeout.weft.dev/response"
	AnnotationTimeoutIdle     = "timeout.weft.dev/idle"
)

// IsRetryTimeoutAnnotation says whether key is one of the retry.weft.dev/* or
// timeout.weft.dev/* annotations (or a misspelt one under those prefixes, which the
// families report as unknown by ignoring it: only the names above are read).
func IsRetryTimeoutAnnotation(key string) bool {
	return strings.HasPrefix(key, "retry.weft.dev/") || strings.HasPrefix(key, "timeout.weft.dev/")
}

// RetryTimeoutAnnotationsEqual says whether two annotation maps agree on every
// retry.weft.dev/* and timeout.weft.dev/* annotation: the only annotations the
// compiler reads of Services and routes.
func RetryTimeoutAnnotationsEqual(a, b map[string]string) bool {
	for _, m := range [2][2]map[string]string{{a, b}, {b, a}} {
		for k, v := range m[0] {
			if IsRetryTimeoutAnnotation(k) {
				if w, ok := m[1][k]; !ok || w != v {
					return false
				}
			}
		}
	}
	return true
}

// Kinds the annotations are read from.
const (
	KindService   = "Service"
	KindHTTPRoute = "HTTPRoute"
	KindGRPCRoute = "GRPCRoute"
)

// StatusRange is an inclusive range of HTTP statuses.
type StatusRange struct{ Min, Max uint32 }

// RetryAnnotations is an object's valid retry.weft.dev/* family.
type RetryAnnotations struct {
	// Set: at least one retry annotation is present (and the family is valid).
	Set bool
	// HTTP are the statuses retry.weft.dev/http names (nil: not given).
	HTTP []StatusRange
	// GRPC are the gRPC status codes retry.weft.dev/grpc names (nil: not given).
	GRPC []uint32
	// Limit is the number of retries per request (Linkerd's default 1).
	Limit uint32
	// Timeout bounds each attempt; an attempt it ends is retried (0: none).
	Timeout time.Duration
}

// TimeoutAnnotations is an object's valid timeout.weft.dev/* family; a nil field
// was not given, an explicit zero disables that timeout.
type TimeoutAnnotations struct {
	Set                     bool
	Request, Response, Idle *time.Duration
}

// grpcRetryCodes are the gRPC codes retry.weft.dev/grpc accepts: Linkerd's list.
var grpcRetryCodes = map[string]uint32{
	"cancelled":          1,
	"deadline-exceeded":  4,
	"resource-exhausted": 8,
	"internal":           13,
	"unavailable":        14,
}

// maxRetryLimit is the largest retry.weft.dev/limit: Linkerd parses it as a u16.
const maxRetryLimit = 65535

// RetryTimeoutAnnotations reads the retry and timeout annotations of an object of
// kind (KindService, KindHTTPRoute or KindGRPCRoute). A family with any invalid value
// is returned unset, with one error per invalid annotation.
func RetryTimeoutAnnotations(kind string, annotations map[string]string) (RetryAnnotations, TimeoutAnnotations, field.ErrorList) {
	root := field.NewPath("metadata", "annotations")
	var retry RetryAnnotations
	var rerrs field.ErrorList
	bad := func(key, v, why string) {
		rerrs = append(rerrs, field.Invalid(root.Key(key), v, why))
	}
	if v, ok := annotations[AnnotationRetryHTTP]; ok {
		retry.Set = true
		if kind == KindGRPCRoute {
			bad(AnnotationRetryHTTP, v, "not valid on a GRPCRoute: use "+AnnotationRetryGRPC)
		} else if rs, err := parseHTTPRetry(v); err != nil {
			bad(AnnotationRetryHTTP, v, err.Error())
		} else {
			retry.HTTP = rs
		}
	}
	if v, ok := annotations[AnnotationRetryGRPC]; ok {
		retry.Set = true
		if kind == KindHTTPRoute {
			bad(AnnotationRetryGRPC, v, "not valid on an HTTPRoute: use "+AnnotationRetryHTTP)
		} else if cs, err := parseGRPCRetry(v); err != nil {
			bad(AnnotationRetryGRPC, v, err.Error())
		} else {
			retry.GRPC = cs
		}
	}
	retry.Limit = 1
	if v, ok := annotations[AnnotationRetryLimit]; ok {
		retry.Set = true
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		switch {
		case err != nil || n > maxRetryLimit:
			bad(AnnotationRetryLimit, v, fmt.Sprintf("must be a whole number of retries from 0 to %d", maxRetryLimit))
		case n > 0:
			// 0 is Linkerd's "unset": the default of one retry.
			retry.Limit = uint32(n)
		}
	}
	if v, ok := annotations[AnnotationRetryTimeout]; ok {
		retry.Set = true
		if d, err := parseAnnotationDuration(v); err != nil {
			bad(AnnotationRetryTimeout, v, err.Error())
		} else {
			retry.Timeout = d
		}
	}
	if len(rerrs) > 0 {
		retry = RetryAnnotations{}
	}

	var to TimeoutAnnotations
	var terrs field.ErrorList
	for _, a := range []struct {
		key string
		dst **time.Duration
	}{{AnnotationTimeoutRequest, &to.Request}, {AnnotationTimeoutResponse, &to.Response}, {AnnotationTimeoutIdle, &to.Idle}} {
		v, ok := annotations[a.key]
		if !ok {
			continue
		}
		to.Set = true
		d, err := parseAnnotationDuration(v)
		if err != nil {
			terrs = append(terrs, field.Invalid(root.Key(a.key), v, err.Error()))
			continue
		}
		*a.dst = &d
	}
	if len(terrs) > 0 {
		to = TimeoutAnnotations{}
	}
	return retry, to, append(rerrs, terrs...)
}

// maxHTTPRetryElements bounds retry.weft.dev/http: every proxy that talks to the
// Service receives the list and checks each failed response against it, so an
// annotation of thousands of elements must not reach them. Ranges say any real list
// in a few.
const maxHTTPRetryElements = 32

// parseHTTPRetry reads a comma-separated list of "xxx", "xxx-yyy", "gateway-error"
// (502-504) and "5xx" (500-599).
func parseHTTPRetry(v string) ([]StatusRange, error) {
	if n := strings.Count(v, ",") + 1; n > maxHTTPRetryElements {
		return nil, fmt.Errorf("%d elements: at most %d (use ranges such as 500-504)", n, maxHTTPRetryElements)
	}
	var out []StatusRange
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			return nil, fmt.Errorf("empty element: list statuses as 504, 500-504, gateway-error or 5xx, separated by commas")
		case strings.EqualFold(item, "5xx"):
			out = append(out, StatusRange{500, 599})
		case strings.EqualFold(item, "gateway-error"):
			out = append(out, StatusRange{502, 504})
		default:
			lo, hi, isRange := strings.Cut(item, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := parseStatus(lo)
			b, err2 := parseStatus(hi)
			if err1 != nil || err2 != nil || a > b {
				return nil, fmt.Errorf("%q is not a status (100-599), a range of them (500-504), gateway-error or 5xx", item)
			}
			out = append(out, StatusRange{a, b})
		}
	}
	return out, nil
}

func parseStatus(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("bad status %q", s)
	}
	return uint32(n), nil
}

// parseGRPCRetry reads a comma-separated list of Linkerd's retryable gRPC codes.
func parseGRPCRetry(v string) ([]uint32, error) {
	var out []uint32
	for item := range strings.SplitSeq(v, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		c, ok := grpcRetryCodes[item]
		if !ok {
			return nil, fmt.Errorf("%q is not one of cancelled, deadline-exceeded, internal, resource-exhausted, unavailable", item)
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out, nil
}

// parseAnnotationDuration reads a duration with its unit ("5s", "200ms"); like
// Linkerd, a bare number ("5") is refused rather than guessed at.
func parseAnnotationDuration(v string) (time.Duration, error) {
	s := strings.TrimSpace(v)
	d, err := time.ParseDuration(s)
	if err != nil || s == "" || (s[len(s)-1] >= '0' && s[len(s)-1] <= '9') {
		return 0, fmt.Errorf("must be a duration with its unit, such as 5s or 200ms")
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative")
	}
	return d, nil
}
