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
	"bufio"
	"math"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/internal/histogram"
)

// Sum adds up the samples of the metric `name` in Prometheus text whose label set
// contains every one of labels (each written as key="value").
func Sum(text, name string, labels ...string) float64 {
	var sum float64
	eachSample(text, name, labels, func(_ string, v float64) { sum += v })
	return sum
}

// Quantile estimates the q-quantile (0..1) of the histogram `name` from its cumulative
// _bucket samples, summed over the series that carry labels, interpolating linearly
// inside the bucket as Prometheus' histogram_quantile does. It returns NaN when the
// histogram is empty.
func Quantile(text, name string, q float64, labels ...string) float64 {
	buckets := map[float64]float64{}
	eachSample(text, name+"_bucket", labels, func(line string, v float64) {
		i := strings.Index(line, `le="`)
		if i < 0 {
			return
		}
		rest := line[i+4:]
		le, err := strconv.ParseFloat(rest[:strings.IndexByte(rest, '"')], 64)
		if rest[:strings.IndexByte(rest, '"')] == "+Inf" {
			le, err = math.Inf(1), nil
		}
		if err == nil {
			buckets[le] += v
		}
	})
	return histogram.Quantile(buckets, q)
}

func eachSample(text, name string, labels []string, f func(line string, v float64)) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			f(line, v)
		}
	}
}
