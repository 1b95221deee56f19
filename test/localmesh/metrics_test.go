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

package localmesh

import (
	"math"
	"testing"
)

const sample = `# TYPE response_latency_ms histogram
response_latency_ms_bucket{direction="outbound",authority="a",le="1"} 10
response_latency_ms_bucket{direction="outbound",authority="a",le="10"} 90
response_latency_ms_bucket{direction="outbound",authority="a",le="100"} 100
response_latency_ms_bucket{direction="outbound",authority="a",le="+Inf"} 100
response_latency_ms_bucket{direction="inbound",authority="a",le="1"} 0
response_latency_ms_bucket{direction="inbound",authority="a",le="10"} 0
response_latency_ms_bucket{direction="inbound",authority="a",le="100"} 0
response_latency_ms_bucket{direction="inbound",authority="a",le="+Inf"} 4
request_total{direction="outbound",authority="a"} 100
request_total{direction="outbound",authority="b"} 5
request_total{direction="inbound",authority="a"} 4
`

func TestSum(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{name: "all series", want: 109},
		{name: "one direction", labels: []string{`direction="outbound"`}, want: 105},
		{name: "two labels", labels: []string{`direction="outbound"`, `authority="b"`}, want: 5},
		{name: "no match", labels: []string{`direction="sideways"`}, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Sum(sample, "request_total", tc.labels...); got != tc.want {
				t.Errorf("want %v, got %v", tc.want, got)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		q      float64
		labels []string
		want   float64
	}{
		{name: "p50 interpolates inside its bucket", q: 0.5, labels: []string{`direction="outbound"`}, want: 1 + 9*(50-10)/80.0},
		{name: "p95 in the last finite bucket", q: 0.95, labels: []string{`direction="outbound"`}, want: 10 + 90*(95-90)/10.0},
		{name: "only +Inf observations give the highest finite bound", q: 0.5, labels: []string{`direction="inbound"`}, want: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Quantile(sample, "response_latency_ms", tc.q, tc.labels...); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("want %v, got %v", tc.want, got)
			}
		})
	}
	if got := Quantile(sample, "response_latency_ms", 0.5, `direction="none"`); !math.IsNaN(got) {
		t.Errorf("want NaN for an empty histogram, got %v", got)
	}
}
