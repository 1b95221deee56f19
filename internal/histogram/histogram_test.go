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

package histogram

import (
	"math"
	"testing"
)

func TestQuantile(t *testing.T) {
	buckets := map[float64]float64{1: 10, 10: 90, 100: 100, math.Inf(1): 100}
	for _, tc := range []struct {
		name    string
		buckets map[float64]float64
		q, want float64
	}{
		{name: "p50 interpolates inside its bucket", buckets: buckets, q: 0.5, want: 1 + 9*(50-10)/80.0},
		{name: "p95 in the last finite bucket", buckets: buckets, q: 0.95, want: 10 + 90*(95-90)/10.0},
		{name: "first bucket starts at zero", buckets: buckets, q: 0.05, want: 0.5},
		{name: "above every finite bound gives the highest", buckets: map[float64]float64{1: 0, 10: 0, math.Inf(1): 4}, q: 0.5, want: 10},
		{name: "empty is NaN", buckets: map[float64]float64{1: 0, math.Inf(1): 0}, q: 0.5, want: math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Quantile(tc.buckets, tc.q)
			if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9) {
				t.Errorf("want %v, got %v", tc.want, got)
			}
		})
	}
}
