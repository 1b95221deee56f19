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

package tap

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The tap API's metrics, on controller-runtime's registry (weft-controller's /metrics).
var (
	// RequestsTotal counts tap requests by the HTTP status they were answered with:
	// 200 (a tap started), 400, 401, 403, 404, 429, 500, 503.
	RequestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_tap_requests_total",
		Help: "Tap API requests by response code: 200 a tap started, 401 not from the kube-apiserver, 403 not permitted, 404 no such workload or no meshed pod, 429 too many taps.",
	}, []string{"code"})
	// ActiveTaps is the taps being streamed by this replica.
	ActiveTaps = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weft_tap_active",
		Help: "Taps this replica is streaming now.",
	})
)

func init() {
	ctrlmetrics.Registry.MustRegister(RequestsTotal, ActiveTaps)
}

func countRequest(code int) { RequestsTotal.WithLabelValues(strconv.Itoa(code)).Inc() }
