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

package destination

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The limit label values of LimitExceededTotal.
const (
	LimitStreamsPerIdentity = "streams_per_identity"
	LimitTargetsPerIdentity = "targets_per_identity"
)

// The destination service's metrics, on controller-runtime's registry so the manager's
// /metrics endpoint serves them.
var (
	// Subscribers is the number of open Get streams.
	Subscribers = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weft_destination_subscribers",
		Help: "Open destination subscriptions (Get streams).",
	})
	// Destinations is the number of distinct destinations with subscribers.
	Destinations = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weft_destination_destinations",
		Help: "Distinct destinations (target and client namespace) with at least one subscriber.",
	})
	// UpdatesTotal counts messages sent to subscribers, by kind.
	UpdatesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_destination_updates_sent_total",
		Help: "Messages sent on destination streams, by kind (snapshot, endpoints, not_found).",
	}, []string{"kind"})
	// RefusedTotal counts refused subscriptions by gRPC code.
	RefusedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_destination_subscriptions_refused_total",
		Help: "Get calls refused, by gRPC status code.",
	}, []string{"code"})
	// LimitExceededTotal counts subscriptions refused with ResourceExhausted, by the
	// limit that bit.
	LimitExceededTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_destination_limit_exceeded_total",
		Help: "Get calls refused because a per-client-identity limit bit, by limit (streams_per_identity, targets_per_identity).",
	}, []string{"limit"})
	// CompileSeconds is the time a recompilation (state, compile, fan-out) takes.
	CompileSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "weft_destination_compile_seconds",
		Help:    "Time to rebuild the compiler state, recompile the affected destinations and offer them to subscribers.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	// ChangeLatencySeconds is how stale the service is: from the informer event of a
	// change to the recompiled configurations being handed to the streams.
	ChangeLatencySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "weft_destination_change_latency_seconds",
		Help:    "Time from the first informer event of a change to the recompiled destinations being handed to their streams.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
)

func init() {
	ctrlmetrics.Registry.MustRegister(Subscribers, Destinations, UpdatesTotal, RefusedTotal, CompileSeconds, ChangeLatencySeconds, LimitExceededTotal)
	for _, l := range []string{LimitStreamsPerIdentity, LimitTargetsPerIdentity} {
		LimitExceededTotal.WithLabelValues(l)
	}
	for _, k := range []string{"snapshot", "endpoints", "not_found"} {
		UpdatesTotal.WithLabelValues(k)
	}
}
