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

package tapclient

import (
	"strconv"
	"time"

	"github.com/weftmesh/weft/proxy/api"
)

// Peer is one side of a tapped request as a page shows it.
type Peer struct {
	Address  string `json:"address"`
	Identity string `json:"identity,omitempty"`
	// Pod and Owner come from the proxy's labels for the side ("" when it knows none).
	Pod   string `json:"pod,omitempty"`
	Owner string `json:"owner,omitempty"` // deployment/web, statefulset/db, ...
}

// Summary is one tap event flattened with what the earlier events of its request said,
// so a page can show a whole row per request and update it as the request goes on.
type Summary struct {
	// ID names the request across proxies (namespace/pod:id); the events of one
	// request share it.
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // req, rsp or end
	Time      time.Time `json:"time"`
	Direction string    `json:"direction"` // in or out
	Proxy     string    `json:"proxy"`     // namespace/pod
	Source    Peer      `json:"source"`
	Dest      Peer      `json:"destination"`
	Method    string    `json:"method,omitempty"`
	Authority string    `json:"authority,omitempty"`
	Path      string    `json:"path,omitempty"`
	Route     string    `json:"route,omitempty"`
	Protocol  string    `json:"protocol,omitempty"`
	TLS       bool      `json:"tls"`
	// Status is the HTTP status (0 until the response head); GRPCStatus is set for a
	// gRPC response once it ended.
	Status     uint32  `json:"status,omitempty"`
	GRPCStatus *uint32 `json:"grpcStatus,omitempty"`
	// LatencyMs is the time to the response head; DurationMs the whole exchange.
	LatencyMs     float64 `json:"latencyMs,omitempty"`
	DurationMs    float64 `json:"durationMs,omitempty"`
	RequestBytes  uint64  `json:"requestBytes,omitempty"`
	ResponseBytes uint64  `json:"responseBytes,omitempty"`
	Error         string  `json:"error,omitempty"`
	// Dropped counts events the tap dropped (its rate bound) before this one.
	Dropped uint64 `json:"dropped,omitempty"`
}

// Summarizer turns events into Summaries, remembering each request's earlier events
// (bounded as the line renderer's are).
type Summarizer struct {
	t tracker
}

// Summarize returns the summary of ev; false for an event with no step (a report of
// drops alone comes back with Kind "dropped").
func (s *Summarizer) Summarize(ev *api.TapEvent) (Summary, bool) {
	at := time.Now().UTC()
	if ts := ev.GetTime(); ts != nil {
		at = ts.AsTime().UTC()
	}
	if ev.GetEvent() == nil {
		if d := ev.GetDropped(); d > 0 {
			return Summary{Kind: "dropped", Time: at, Dropped: d}, true
		}
		return Summary{}, false
	}
	k := keyOf(ev)
	r := s.t.get(k)
	out := Summary{
		ID: k.pod + ":" + strconv.FormatUint(k.id, 10), Time: at, Direction: direction(ev.GetDirection()), Proxy: k.pod,
		Source: peerOf(ev.GetSource()), Dest: peerOf(ev.GetDestination()), Dropped: ev.GetDropped(),
	}
	switch e := ev.GetEvent().(type) {
	case *api.TapEvent_RequestInit:
		r.init = e.RequestInit
		out.Kind = "req"
	case *api.TapEvent_ResponseInit:
		r.status = e.ResponseInit.GetHttpStatus()
		r.rsp = e.ResponseInit.GetSinceRequestInit().AsDuration()
		out.Kind = "rsp"
	case *api.TapEvent_ResponseEnd:
		end := e.ResponseEnd
		out.Kind = "end"
		out.GRPCStatus = end.GrpcStatus
		out.DurationMs = millis(end.GetSinceRequestInit().AsDuration())
		out.RequestBytes, out.ResponseBytes = end.GetRequestBytes(), end.GetResponseBytes()
		out.Error = end.GetError()
		s.t.done(k)
	default:
		return Summary{}, false
	}
	in := r.init
	out.Method, out.Authority, out.Path, out.Route = in.GetMethod(), in.GetAuthority(), in.GetPath(), in.GetRoute()
	out.Protocol, out.TLS = in.GetProtocol(), in.GetTls()
	out.Status = r.status
	if r.rsp > 0 {
		out.LatencyMs = millis(r.rsp)
	}
	return out, true
}

func peerOf(p *api.TapPeer) Peer {
	out := Peer{Address: p.GetAddress(), Identity: p.GetIdentity()}
	for _, l := range p.GetLabels() {
		switch l.GetName() {
		case "pod":
			out.Pod = l.GetValue()
		case "deployment", "statefulset", "daemonset", "replicaset", "job", "cronjob":
			if out.Owner == "" || l.GetName() == "deployment" {
				out.Owner = l.GetName() + "/" + l.GetValue()
			}
		}
	}
	return out
}

func millis(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
