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
	"net"
	"net/netip"
	"strconv"
	"strings"

	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// MaxSamplingPerMillion is a sampling rate of 1: every trace.
const MaxSamplingPerMillion = 1_000_000

// Tracing checks a Mesh's spec.tracing the way the proxies will use it: the collector
// must be a dialable host:port and the sampling rate an exact decimal from 0 to 1. The
// CRD's schema says the same in CEL; this is the rule the control plane applies before
// it hands the configuration to proxies, so an object the API server stored under an
// older, looser schema (or wrote without one, as unit tests do) cannot reach them. nil
// is valid: tracing is off.
func Tracing(t *meshv1alpha1.TracingSpec, path *field.Path) field.ErrorList {
	if t == nil {
		return nil
	}
	var errs field.ErrorList
	if err := TracingCollector(t.Collector); err != nil {
		errs = append(errs, field.Invalid(path.Child("collector"), t.Collector, err.Error()))
	}
	if t.SamplingRate != "" {
		if _, err := SamplingPerMillion(t.SamplingRate); err != nil {
			errs = append(errs, field.Invalid(path.Child("samplingRate"), t.SamplingRate, err.Error()))
		}
	}
	return errs
}

// TracingCollector checks an OTLP/gRPC collector address: host:port with a DNS name or
// an IP literal (IPv6 in brackets) and a port from 1 to 65535.
func TracingCollector(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port, such as jaeger.tracing.svc.cluster.local:4317")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if strings.Contains(host, ":") {
		return fmt.Errorf("host %q is not an IP address", host)
	}
	if msgs := k8svalidation.IsDNS1123Subdomain(host); len(msgs) > 0 {
		return fmt.Errorf("host %q must be a lower-case DNS name or an IP address: %s", host, strings.Join(msgs, "; "))
	}
	return nil
}

// SamplingPerMillion parses a sampling rate, a decimal from "0" to "1" with at most six
// decimal places, into millionths: exactly, without a float, so "0.000001" is one in a
// million and not a rounding error's worth more or less. "" is the default rate.
func SamplingPerMillion(rate string) (uint32, error) {
	if rate == "" {
		rate = meshdefaults.TracingSamplingRate
	}
	bad := fmt.Errorf("must be a decimal from 0 to 1 with at most six decimal places, such as 0.01 (1%% of traces) or 1 (every trace)")
	whole, frac, hasPoint := strings.Cut(rate, ".")
	if (whole != "0" && whole != "1") || (hasPoint && (len(frac) == 0 || len(frac) > 6)) {
		return 0, bad
	}
	n := uint32(0)
	if whole == "1" {
		n = MaxSamplingPerMillion
	}
	for i := range 6 {
		d := byte('0')
		if i < len(frac) {
			d = frac[i]
		}
		if d < '0' || d > '9' {
			return 0, bad
		}
		n += uint32(d-'0') * pow10[5-i]
	}
	if n > MaxSamplingPerMillion {
		return 0, bad
	}
	return n, nil
}

var pow10 = [6]uint32{1, 10, 100, 1_000, 10_000, 100_000}
