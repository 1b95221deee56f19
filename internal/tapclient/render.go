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
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weftmesh/weft/proxy/api"
)

// maxTracked bounds the requests a renderer remembers between their events: a request
// whose end never comes (the proxy or the rate bound dropped it) is forgotten oldest
// first.
const maxTracked = 10000

// requestKey names one request across proxies: ids are per proxy stream.
type requestKey struct {
	pod string
	id  uint64
}

func keyOf(ev *api.TapEvent) requestKey {
	return requestKey{pod: ev.GetProxy().GetNamespace() + "/" + ev.GetProxy().GetPod(), id: ev.GetId()}
}

// tracked is what a renderer remembers of a request between its events.
type tracked struct {
	init   *api.TapRequestInit
	status uint32
	rsp    time.Duration
}

// tracker keeps per-request state, bounded.
type tracker struct {
	m     map[requestKey]*tracked
	order []requestKey
}

func (t *tracker) get(k requestKey) *tracked {
	if t.m == nil {
		t.m = map[requestKey]*tracked{}
	}
	if r, ok := t.m[k]; ok {
		return r
	}
	if len(t.m) >= maxTracked {
		for len(t.order) > 0 {
			old := t.order[0]
			t.order = t.order[1:]
			if _, ok := t.m[old]; ok {
				delete(t.m, old)
				break
			}
		}
	}
	r := &tracked{}
	t.m[k] = r
	t.order = append(t.order, k)
	if len(t.order) > 4*maxTracked {
		// Compact: drop keys already deleted.
		kept := t.order[:0]
		for _, k := range t.order {
			if _, ok := t.m[k]; ok {
				kept = append(kept, k)
			}
		}
		t.order = kept
	}
	return r
}

func (t *tracker) done(k requestKey) { delete(t.m, k) }

// LineWriter prints events as `weft tap` does: one Linkerd-like line per event, or
// (JSON) the protojson event.
type LineWriter struct {
	W    io.Writer
	JSON bool
	t    tracker
}

// Write prints one event.
func (lw *LineWriter) Write(ev *api.TapEvent) error {
	if lw.JSON {
		b, err := protojson.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(lw.W, "%s\n", b)
		return err
	}
	line := lw.Format(ev)
	if line == "" {
		return nil
	}
	_, err := io.WriteString(lw.W, line+"\n")
	return err
}

// Format returns the line of one event (empty for an event with no step).
func (lw *LineWriter) Format(ev *api.TapEvent) string {
	if ev.GetEvent() == nil {
		if d := ev.GetDropped(); d > 0 {
			// A report of drops alone (the tap API's rate bound).
			return fmt.Sprintf("dropped %d events (the tap's rate bound: raise --max-rps or narrow the filters)", d)
		}
		return ""
	}
	k := keyOf(ev)
	r := lw.t.get(k)
	var b strings.Builder
	head := func(kind string) {
		fmt.Fprintf(&b, "%s id=%s:%d proxy=%s src=%s dst=%s tls=%t", kind, k.pod, ev.GetId(), direction(ev.GetDirection()),
			peer(ev.GetSource()), peer(ev.GetDestination()), r.init.GetTls())
	}
	switch e := ev.GetEvent().(type) {
	case *api.TapEvent_RequestInit:
		r.init = e.RequestInit
		head("req")
		fmt.Fprintf(&b, " :method=%s :authority=%s :path=%s", e.RequestInit.GetMethod(), e.RequestInit.GetAuthority(), e.RequestInit.GetPath())
		if rt := e.RequestInit.GetRoute(); rt != "" {
			fmt.Fprintf(&b, " route=%s", rt)
		}
	case *api.TapEvent_ResponseInit:
		head("rsp")
		fmt.Fprintf(&b, " :status=%d latency=%s", e.ResponseInit.GetHttpStatus(), micros(e.ResponseInit.GetSinceRequestInit().AsDuration()))
	case *api.TapEvent_ResponseEnd:
		head("end")
		end := e.ResponseEnd
		if end.GrpcStatus != nil {
			fmt.Fprintf(&b, " grpc-status=%d", end.GetGrpcStatus())
		}
		fmt.Fprintf(&b, " duration=%s response-length=%dB", micros(end.GetSinceResponseInit().AsDuration()), end.GetResponseBytes())
		if end.GetError() != "" {
			fmt.Fprintf(&b, " error=%q", end.GetError())
		}
		lw.t.done(k)
	default:
		return ""
	}
	if d := ev.GetDropped(); d > 0 {
		fmt.Fprintf(&b, " dropped=%d", d)
	}
	return b.String()
}

func direction(d api.TapDirection) string {
	switch d {
	case api.TapDirection_TAP_DIRECTION_INBOUND:
		return "in"
	case api.TapDirection_TAP_DIRECTION_OUTBOUND:
		return "out"
	}
	return "?"
}

// peer is the address, or the workload the labels name when there is none.
func peer(p *api.TapPeer) string {
	if a := p.GetAddress(); a != "" {
		return a
	}
	return "-"
}

func micros(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + "µs"
}
