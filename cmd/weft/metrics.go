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

package main

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// sample is one series of a proxy's /metrics as the text format writes it: a metric
// name (with _bucket, _sum and _count for histograms), its labels and value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// maxMetricsBytes bounds one proxy's /metrics that weft reads. A proxy bounds its
// series (2,000 request and 2,000 route series, proxy/metrics), which render to a
// few MiB; anything larger is not a Weft proxy's answer.
const maxMetricsBytes = 32 << 20

// parseMetrics reads the Prometheus text exposition format with the Prometheus
// project's own parser (prometheus/common/expfmt) and flattens the families into
// samples as they appear on the wire, so that callers can group by any label,
// le included. Samples come out sorted by name, then labels, for stable output.
func parseMetrics(text string) ([]sample, error) {
	if len(text) > maxMetricsBytes {
		return nil, fmt.Errorf("the metrics are %d bytes, more than the %d a proxy writes", len(text), maxMetricsBytes)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics: %w", err)
	}
	var out []sample
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel())+1)
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out = append(out, flatten(name, f.GetType(), m, labels)...)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].name != out[j].name {
			return out[i].name < out[j].name
		}
		return fmt.Sprint(out[i].labels) < fmt.Sprint(out[j].labels)
	})
	return out, nil
}

// flatten turns one metric of a family into its wire samples.
func flatten(name string, typ dto.MetricType, m *dto.Metric, labels map[string]string) []sample {
	switch typ {
	case dto.MetricType_COUNTER:
		return []sample{{name, labels, m.GetCounter().GetValue()}}
	case dto.MetricType_GAUGE:
		return []sample{{name, labels, m.GetGauge().GetValue()}}
	case dto.MetricType_HISTOGRAM:
		h := m.GetHistogram()
		out := make([]sample, 0, len(h.GetBucket())+3)
		sawInf := false
		for _, b := range h.GetBucket() {
			le := b.GetUpperBound()
			sawInf = sawInf || math.IsInf(le, 1)
			out = append(out, sample{name + "_bucket", withLabel(labels, "le", formatLe(le)), float64(b.GetCumulativeCount()) + b.GetCumulativeCountFloat()})
		}
		count := float64(h.GetSampleCount()) + h.GetSampleCountFloat()
		if !sawInf {
			// The text parser keeps the +Inf bucket as the count.
			out = append(out, sample{name + "_bucket", withLabel(labels, "le", "+Inf"), count})
		}
		return append(out, sample{name + "_sum", labels, h.GetSampleSum()}, sample{name + "_count", labels, count})
	case dto.MetricType_SUMMARY:
		s := m.GetSummary()
		out := make([]sample, 0, len(s.GetQuantile())+2)
		for _, q := range s.GetQuantile() {
			out = append(out, sample{name, withLabel(labels, "quantile", strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)), q.GetValue()})
		}
		return append(out, sample{name + "_sum", labels, s.GetSampleSum()}, sample{name + "_count", labels, float64(s.GetSampleCount())})
	}
	return []sample{{name, labels, m.GetUntyped().GetValue()}}
}

func withLabel(labels map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(labels)+1)
	for lk, lv := range labels {
		out[lk] = lv
	}
	out[k] = v
	return out
}

// formatLe writes a bucket bound as Prometheus does ("+Inf", "10", "0.5").
func formatLe(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
