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

package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/internal/tapclient"
	"github.com/weftmesh/weft/proxy/api"
)

// Bounds of the live tap view. Whoever can port-forward to the dashboard can open
// streams, and a browser tab can stall: each bound keeps one of them from pinning taps
// (and the proxies' tap streams behind them) open.
const (
	// DefaultMaxTapStreams is how many taps the dashboard streams at once; the next
	// one gets 429.
	DefaultMaxTapStreams = 4
	// DefaultMaxTapDuration ends a stream, so a forgotten tab stops tapping.
	DefaultMaxTapDuration = 10 * time.Minute
	// DefaultTapEventsPerSecond is the rate the dashboard asks of the tap API (it
	// drops and counts what exceeds it).
	DefaultTapEventsPerSecond = 100
	// tapWriteTimeout bounds each write to the browser: a reader that stops reading
	// ends the stream instead of holding the tap open.
	tapWriteTimeout = 10 * time.Second
	// tapHeartbeat is how often a quiet stream sends a comment, so a browser gone
	// without closing its connection is found within a write timeout.
	tapHeartbeat = 15 * time.Second
)

// TapStreams serves GET /api/tap/stream: a tap through the tap API (tap.weft.dev, with
// the dashboard's own credentials) sent to the browser as Server-Sent Events, one
// tapclient.Summary per event.
type TapStreams struct {
	// Config reaches the API server as the dashboard's ServiceAccount.
	Config *rest.Config
	// Zero values take the defaults above.
	MaxStreams      int
	MaxDuration     time.Duration
	EventsPerSecond uint32
	WriteTimeout    time.Duration
	Heartbeat       time.Duration

	once sync.Once
	sem  chan struct{}
}

func (ts *TapStreams) init() {
	ts.once.Do(func() {
		if ts.MaxStreams <= 0 {
			ts.MaxStreams = DefaultMaxTapStreams
		}
		if ts.MaxDuration <= 0 {
			ts.MaxDuration = DefaultMaxTapDuration
		}
		if ts.EventsPerSecond == 0 {
			ts.EventsPerSecond = DefaultTapEventsPerSecond
		}
		if ts.WriteTimeout <= 0 {
			ts.WriteTimeout = tapWriteTimeout
		}
		if ts.Heartbeat <= 0 {
			ts.Heartbeat = tapHeartbeat
		}
		ts.sem = make(chan struct{}, ts.MaxStreams)
	})
}

// tapRequestOf reads the query: ns, the workload as target=deploy/web (or resource=
// deployments&name=web; neither taps the whole namespace) and the optional filters
// path (a prefix), method and authority. The tap API checks the filters again and says
// what is wrong with them.
func tapRequestOf(q url.Values, eventsPerSecond uint32) (tapclient.Request, string) {
	ns := q.Get("ns")
	if ns == "" {
		return tapclient.Request{}, "say which namespace: ?ns=<namespace>&target=deploy/<name>"
	}
	var args []string
	switch {
	case q.Get("target") != "":
		args = []string{q.Get("target")}
	case q.Get("resource") != "" || q.Get("name") != "":
		args = []string{q.Get("resource"), q.Get("name")}
	default:
		args = []string{"ns", ns}
	}
	resource, name, err := tapclient.ParseTarget(args)
	if err != nil {
		return tapclient.Request{}, err.Error()
	}
	return tapclient.Request{
		Namespace: ns, Resource: resource, Name: name,
		Observe: &api.ObserveRequest{
			Match: &api.TapMatch{PathPrefix: q.Get("path"), Method: q.Get("method"), Authority: q.Get("authority")},
			// The tap API drops and counts what exceeds this.
			MaxEventsPerSecond: eventsPerSecond,
		},
	}, ""
}

// sseWriter writes events to one browser, one at a time (the heartbeat and the tap
// share it), each write bounded by a deadline.
type sseWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	err     error
}

// write sends one frame and flushes it; after a failure every write fails.
func (s *sseWriter) write(frame []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = err
		return err
	}
	if _, err := s.w.Write(frame); err != nil {
		s.err = err
		return err
	}
	if err := s.rc.Flush(); err != nil {
		s.err = err
	}
	return s.err
}

// event sends v as JSON under the SSE event name.
func (s *sseWriter) event(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// JSON has no raw newlines, so the data is one line.
	return s.write(fmt.Appendf(nil, "event: %s\ndata: %s\n\n", name, b))
}

// ServeHTTP streams one tap.
func (ts *TapStreams) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ts.init()
	req, msg := tapRequestOf(r.URL.Query(), ts.EventsPerSecond)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	select {
	case ts.sem <- struct{}{}:
		defer func() { <-ts.sem }()
	default:
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf(
			"the dashboard streams %d taps already, its limit; stop one (or close its tab) and retry", ts.MaxStreams))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), ts.MaxDuration)
	defer cancel()
	sw := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: ts.WriteTimeout}
	opened := false
	beat := make(chan struct{})
	var beating sync.WaitGroup
	defer func() { close(beat); beating.Wait() }()
	req.OnOpen = func() {
		opened = true
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		if sw.event("open", map[string]any{
			"namespace": req.Namespace, "resource": req.Resource, "name": req.Name,
			"maxEventsPerSecond": ts.EventsPerSecond, "maxSeconds": ts.MaxDuration.Seconds(),
		}) != nil {
			cancel()
			return
		}
		beating.Add(1)
		go func() {
			defer beating.Done()
			t := time.NewTicker(ts.Heartbeat)
			defer t.Stop()
			for {
				select {
				case <-beat:
					return
				case <-ctx.Done():
					return
				case <-t.C:
					if sw.write([]byte(": keepalive\n\n")) != nil {
						cancel() // the browser is gone or stalled: end the tap
						return
					}
				}
			}
		}()
	}
	var sum tapclient.Summarizer
	err := tapclient.Watch(ctx, ts.Config, req, func(ev *api.TapEvent) error {
		s, ok := sum.Summarize(ev)
		if !ok {
			return nil
		}
		return sw.event("tap", s)
	})
	if !opened {
		if err == nil || r.Context().Err() != nil {
			return
		}
		code, msg := tapRefusal(err)
		writeError(w, code, msg)
		return
	}
	switch {
	case r.Context().Err() != nil, sw.failed():
		// The browser left or stopped reading: nobody to tell.
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		_ = sw.event("end", map[string]string{"reason": fmt.Sprintf("the dashboard ends a tap after %s; start it again to go on", ts.MaxDuration)})
	case err != nil:
		_ = sw.event("error", map[string]string{"error": err.Error()})
	default:
		_ = sw.event("end", map[string]string{"reason": "the tap API ended the stream: no proxy of the workload is streaming any more (pods gone or restarted); start it again"})
	}
}

func (s *sseWriter) failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

// tapRefusal is the status and message for a tap the API refused (or could not be
// reached for): the API's own code and message, so the page says what the CLI says.
func tapRefusal(err error) (int, string) {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		code := int(s.Code)
		if code < 400 {
			code = http.StatusBadGateway
		}
		return code, s.Message
	}
	return http.StatusBadGateway, "the dashboard could not reach the tap API through the API server: " + err.Error()
}
