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

// Package histogram estimates quantiles from the cumulative buckets of a Prometheus
// histogram, for the tools that read the proxies' metrics without a Prometheus
// (weft stat, the local demo).
package histogram

import (
	"math"
	"sort"
)

// Quantile estimates the q-quantile from cumulative histogram buckets (upper bound →
// count), interpolating linearly inside the bucket that holds the rank, as
// Prometheus' histogram_quantile does. Observations above the highest finite bound
// give that bound. NaN when the histogram is empty.
func Quantile(buckets map[float64]float64, q float64) float64 {
	bounds := make([]float64, 0, len(buckets))
	for le := range buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 || buckets[bounds[len(bounds)-1]] <= 0 {
		return math.NaN()
	}
	rank := q * buckets[bounds[len(bounds)-1]]
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		count := buckets[le]
		if count >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			if count == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(count-below)
		}
		lower, below = le, count
	}
	return lower
}
