package tap

import (
	"io"

	"github.com/weftmesh/weft/internal/promtext"
)

// WriteMetrics writes the tap's series (weft_tap_*; the Linkerd proxy has no tap
// metrics to match) in the Prometheus text format. A nil Tap writes the families
// with zero values, so dashboards find them on every proxy.
func (t *Tap) WriteMetrics(out io.Writer) error {
	var st *stats
	var active int64
	if t != nil {
		st, active = &t.stats, int64(t.active.Load())
	} else {
		st = &stats{}
	}
	w := promtext.NewWriter(out)
	w.Family("weft_tap_streams", promtext.Gauge, "Tap streams open now (at most 8).")
	w.Int("weft_tap_streams", "", active)
	w.Family("weft_tap_streams_opened_total", promtext.Counter, "Tap streams the proxy accepted.")
	w.Uint("weft_tap_streams_opened_total", "", st.opened.Load())
	w.Family("weft_tap_streams_refused_total", promtext.Counter, "Tap calls refused after the TLS handshake, by reason: limit (8 streams open), identity (not the tap identity), invalid (a malformed request).")
	for _, r := range []struct {
		reason string
		i      refusal
	}{{"limit", refusedLimit}, {"identity", refusedIdentity}, {"invalid", refusedInvalid}} {
		w.Uint("weft_tap_streams_refused_total", promtext.L("reason", r.reason), st.refused[r.i].Load())
	}
	w.Family("weft_tap_events_sent_total", promtext.Counter, "Tap events written to tap streams.")
	w.Uint("weft_tap_events_sent_total", "", st.sent.Load())
	w.Family("weft_tap_events_dropped_total", promtext.Counter, "Tap events dropped, by reason: rate_limit (the stream's max_events_per_second), slow_reader (the stream's queue was full).")
	w.Uint("weft_tap_events_dropped_total", promtext.L("reason", "rate_limit"), st.dropped[dropRate].Load())
	w.Uint("weft_tap_events_dropped_total", promtext.L("reason", "slow_reader"), st.dropped[dropSlow].Load())
	return w.Flush()
}
