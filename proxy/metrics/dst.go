package metrics

import (
	"iter"
	"strings"

	"github.com/weftmesh/weft/internal/promtext"
)

// MaxDstLabels and MaxDstLabelValue bound the labels DstLabels keeps of one
// endpoint: they come from the control plane (pod, workload and Service names, at
// most 253 bytes each in Kubernetes), and every series of the endpoint repeats them.
const (
	MaxDstLabels     = 12
	MaxDstLabelValue = 253
)

// DstLabels renders an endpoint's metric labels (the destination service's
// Endpoint.metric_labels: dst_namespace, dst_service, dst_pod, dst_deployment, ...),
// once per endpoint when its configuration arrives, for the outbound series of the
// requests and connections it serves. Only names of the form dst_[a-z0-9_]+ are kept,
// so a label cannot take the place of one the proxy writes itself (authority, tls,
// status_code) nor break the exposition; values longer than MaxDstLabelValue and
// labels past MaxDstLabels are dropped.
func DstLabels(labels iter.Seq2[string, string]) promtext.Labels {
	var l promtext.Labels
	n := 0
	for name, value := range labels {
		if n == MaxDstLabels {
			break
		}
		if !dstLabelName(name) || value == "" || len(value) > MaxDstLabelValue {
			continue
		}
		l = l.With(name, value)
		n++
	}
	return l
}

func dstLabelName(name string) bool {
	tail, ok := strings.CutPrefix(name, "dst_")
	if !ok || tail == "" {
		return false
	}
	for _, c := range tail {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// join appends the rendered label sets b to a.
func join(a, b promtext.Labels) promtext.Labels {
	switch {
	case b == "":
		return a
	case a == "":
		return b
	}
	return a + "," + b
}
