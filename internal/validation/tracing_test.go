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
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

func TestSamplingPerMillion(t *testing.T) {
	for _, tc := range []struct {
		rate string
		want uint32
		bad  bool
	}{
		{rate: "", want: 10_000}, // the default, 0.01
		{rate: "0", want: 0},
		{rate: "0.0", want: 0},
		{rate: "1", want: 1_000_000},
		{rate: "1.000000", want: 1_000_000},
		{rate: "0.5", want: 500_000},
		{rate: "0.01", want: 10_000},
		{rate: "0.000001", want: 1},
		{rate: "0.123456", want: 123_456},
		{rate: "0.999999", want: 999_999},
		{rate: "1.000001", bad: true},
		{rate: "1.5", bad: true},
		{rate: "2", bad: true},
		{rate: "0.0000001", bad: true},
		{rate: "0.", bad: true},
		{rate: ".5", bad: true},
		{rate: "-0.5", bad: true},
		{rate: "+0.5", bad: true},
		{rate: "0.5a", bad: true},
		{rate: "0x1", bad: true},
		{rate: "1e-2", bad: true},
		{rate: "00.5", bad: true},
		{rate: " 0.5", bad: true},
		{rate: "0.-5", bad: true},
	} {
		t.Run(tc.rate, func(t *testing.T) {
			got, err := SamplingPerMillion(tc.rate)
			if tc.bad {
				if err == nil {
					t.Fatalf("SamplingPerMillion(%q) = %d, want an error", tc.rate, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("SamplingPerMillion(%q) = %d, %v; want %d", tc.rate, got, err, tc.want)
			}
		})
	}
}

func TestTracingCollector(t *testing.T) {
	for _, tc := range []struct {
		name, addr, wantErr string
	}{
		{name: "service name", addr: "jaeger.tracing.svc.cluster.local:4317"},
		{name: "short name", addr: "jaeger:4317"},
		{name: "IPv4", addr: "10.96.0.20:4317"},
		{name: "IPv6", addr: "[fd00::20]:4317"},
		{name: "no port", addr: "jaeger", wantErr: "must be host:port"},
		{name: "empty", addr: "", wantErr: "must be host:port"},
		{name: "port zero", addr: "jaeger:0", wantErr: "from 1 to 65535"},
		{name: "port too large", addr: "jaeger:65536", wantErr: "from 1 to 65535"},
		{name: "named port", addr: "jaeger:otlp", wantErr: "from 1 to 65535"},
		{name: "URL", addr: "http://jaeger:4317", wantErr: "must be host:port"},
		{name: "upper case", addr: "Jaeger:4317", wantErr: "lower-case DNS name"},
		{name: "empty host", addr: ":4317", wantErr: "lower-case DNS name"},
		{name: "bad IPv6", addr: "[fd00::zz]:4317", wantErr: "not an IP address"},
		{name: "underscore", addr: "my_collector:4317", wantErr: "lower-case DNS name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := TracingCollector(tc.addr)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("TracingCollector(%q) = %v, want nil", tc.addr, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("TracingCollector(%q) = %v, want an error containing %q", tc.addr, err, tc.wantErr)
			}
		})
	}
}

func TestTracingNamesTheField(t *testing.T) {
	p := field.NewPath("spec", "tracing")
	if errs := Tracing(nil, p); len(errs) != 0 {
		t.Errorf("nil tracing: %v", errs)
	}
	if errs := Tracing(&meshv1alpha1.TracingSpec{Collector: "jaeger:4317", SamplingRate: "1"}, p); len(errs) != 0 {
		t.Errorf("valid tracing: %v", errs)
	}
	errs := Tracing(&meshv1alpha1.TracingSpec{Collector: "jaeger", SamplingRate: "2"}, p)
	if len(errs) != 2 || errs[0].Field != "spec.tracing.collector" || errs[1].Field != "spec.tracing.samplingRate" {
		t.Errorf("invalid tracing: got %v, want errors on spec.tracing.collector and spec.tracing.samplingRate", errs)
	}
}
