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

// Package tap is the control plane's tap API: an aggregated Kubernetes API
// (tap.weft.dev/v1alpha1) that weft-controller serves on every replica. The
// kube-apiserver authenticates the user and forwards the request with its front-proxy
// client certificate and X-Remote-* headers; the tap API believes those headers only
// from that certificate, asks the API server with a SubjectAccessReview whether the user
// may watch <resource>/tap in the namespace, resolves the workload to its running meshed
// pods, opens an mTLS stream to each pod's proxy tap server (4190) with the control
// plane's tap identity, and writes the merged events as newline-delimited protojson.
package tap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/proxy/api"
)

// Limits of one tap and of a replica.
const (
	// DefaultEventsPerSecond is the merged stream's rate when the request sets none;
	// MaxEventsPerSecond caps what a request may ask (the proxies cap each stream the
	// same).
	DefaultEventsPerSecond = 100
	MaxEventsPerSecond     = 1000
	// DefaultMaxTaps bounds the taps one replica serves at once.
	DefaultMaxTaps = 32
	// maxBody bounds the request body (an ObserveRequest is well under 1 KiB).
	maxBody = 64 << 10
	// maxMatchField bounds each match string.
	maxMatchField = 1024
	// writeTimeout bounds each event's write: a client that stops reading is cut
	// off instead of holding streams to every proxy open.
	writeTimeout = 10 * time.Second
	// apiTimeout bounds each call to the API server a tap makes before it streams
	// (the SubjectAccessReview, reading the workload and listing its pods).
	apiTimeout = 10 * time.Second
)

// ContentType is the tap stream's media type: one protojson TapEvent per line.
const ContentType = "application/x-ndjson"

// Server is the tap API's HTTP handler.
type Server struct {
	// FrontProxy returns the kube-apiserver's front-proxy configuration.
	FrontProxy func(r *http.Request) (*FrontProxy, error)
	// Reviewer creates SubjectAccessReviews (a live client).
	Reviewer client.Client
	// Reader reads workloads and pods (the API server directly: one read per tap).
	Reader client.Reader
	Fanout *Fanout
	// MaxPods bounds the pods of one tap (DefaultMaxPods when 0); MaxTaps the taps
	// served at once (DefaultMaxTaps when 0).
	MaxPods int
	MaxTaps int
	// ProxyTapPort is the proxies' tap port (meshdefaults.TapPort when 0; tests
	// run tap servers on free ports).
	ProxyTapPort int
	Log          logr.Logger

	active atomic.Int64
}

const pathPrefix = "/apis/" + Group + "/" + Version

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/apis", "/apis/":
		s.discovery(w, r, apiGroupList())
		return
	case "/apis/" + Group, "/apis/" + Group + "/":
		s.discovery(w, r, apiGroup())
		return
	case pathPrefix, pathPrefix + "/":
		s.discovery(w, r, apiResourceList())
		return
	}
	t, ok := parseTapPath(r.URL.Path)
	if !ok {
		s.refuse(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("the tap API serves POST %s/watch/namespaces/<namespace>[/<resource>/<name>]/tap; %q is not such a path", pathPrefix, r.URL.Path))
		return
	}
	if r.Method != http.MethodPost {
		s.refuse(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "a tap is a POST with an ObserveRequest body")
		return
	}
	user, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if msg := validateTarget(t); msg != "" {
		s.refuse(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, msg)
		return
	}
	actx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	allowed, why, err := authorize(actx, s.Reviewer, user, t)
	cancel()
	if err != nil {
		s.Log.Error(err, "Authorizing a tap failed", "user", user.Name, "target", t.String())
		s.refuse(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "the tap API could not check the user's permission; retry")
		return
	}
	if !allowed {
		s.refuse(w, http.StatusForbidden, metav1.StatusReasonForbidden, why)
		return
	}
	req, msg := readObserveRequest(r)
	if msg != "" {
		s.refuse(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, msg)
		return
	}
	s.tap(w, r, user, t, req)
}

func (s *Server) discovery(w http.ResponseWriter, r *http.Request, doc any) {
	if r.Method != http.MethodGet {
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "discovery documents are read with GET")
		return
	}
	// Discovery says only which resources exist (the kube-apiserver serves the same
	// to any authenticated user); the request must still come from the API server.
	if _, ok := s.authenticate(w, r); !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc)
}

// authenticate writes 401 and returns false unless the request came from the
// kube-apiserver (its front-proxy certificate). The discovery requests of the
// aggregator's availability check carry the certificate but no user; they pass.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*User, bool) {
	fp, err := s.FrontProxy(r)
	if err != nil {
		s.Log.Error(err, "Cannot authenticate tap requests")
		if r.Method == http.MethodPost {
			countRequest(http.StatusServiceUnavailable)
		}
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "the tap API cannot read the kube-apiserver's front-proxy configuration; retry later")
		return nil, false
	}
	u, err := fp.Authenticate(r)
	if err != nil {
		if r.Method == http.MethodGet && isNoUser(err) {
			return &User{}, true
		}
		s.Log.V(1).Info("Refused an unauthenticated tap request", "remote", r.RemoteAddr, "reason", err.Error())
		if r.Method == http.MethodPost {
			countRequest(http.StatusUnauthorized)
		}
		writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, errUnauthenticated.Error())
		return nil, false
	}
	return u, true
}

// parseTapPath reads /apis/tap.weft.dev/v1alpha1/watch/namespaces/<ns>/tap and
// .../watch/namespaces/<ns>/<resource>/<name>/tap.
func parseTapPath(p string) (Target, bool) {
	rest, ok := strings.CutPrefix(p, pathPrefix+"/watch/namespaces/")
	if !ok {
		return Target{}, false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 2 && parts[1] == Subresource:
		return Target{Namespace: parts[0], Resource: "namespaces", Name: parts[0]}, true
	case len(parts) == 4 && parts[3] == Subresource:
		return Target{Namespace: parts[0], Resource: parts[1], Name: parts[2]}, true
	}
	return Target{}, false
}

// ValidateTarget says what is wrong with t (empty when nothing is): a namespace and name
// that are valid object names and a resource the tap API serves. Clients check it before
// they build a URL path from t, so no name can step out of the tap API's paths.
func ValidateTarget(t Target) string { return validateTarget(t) }

func validateTarget(t Target) string {
	if errs := validation.IsDNS1123Label(t.Namespace); len(errs) > 0 {
		return fmt.Sprintf("namespace %q is not a valid namespace name: %s", t.Namespace, strings.Join(errs, "; "))
	}
	known := false
	for _, r := range Resources {
		known = known || r == t.Resource
	}
	if !known || (t.Resource == "namespaces" && t.Name != t.Namespace) {
		return fmt.Sprintf("resource %q cannot be tapped; use one of %s", t.Resource, strings.Join(Resources, ", "))
	}
	if errs := validation.IsDNS1123Subdomain(t.Name); len(errs) > 0 {
		return fmt.Sprintf("name %q is not a valid object name: %s", t.Name, strings.Join(errs, "; "))
	}
	return ""
}

// readObserveRequest reads and checks the body; an empty body taps everything.
func readObserveRequest(r *http.Request) (*api.ObserveRequest, string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, "reading the request body: " + err.Error()
	}
	if len(body) > maxBody {
		return nil, fmt.Sprintf("the request body is over %d bytes", maxBody)
	}
	req := &api.ObserveRequest{}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := protojson.Unmarshal(body, req); err != nil {
			return nil, "the body is not a protojson weft.tap.v1.ObserveRequest: " + err.Error()
		}
	}
	m := req.GetMatch()
	for name, v := range map[string]string{
		"authority": m.GetAuthority(), "path_prefix": m.GetPathPrefix(), "method": m.GetMethod(),
		"namespace": m.GetNamespace(), "workload": m.GetWorkload(),
	} {
		if len(v) > maxMatchField {
			return nil, fmt.Sprintf("match.%s is longer than %d bytes", name, maxMatchField)
		}
	}
	if p := m.GetPathPrefix(); p != "" && !strings.HasPrefix(p, "/") {
		return nil, fmt.Sprintf("match.path_prefix %q must start with /", p)
	}
	if meth := m.GetMethod(); meth != "" && !isToken(meth) {
		return nil, fmt.Sprintf("match.method %q is not an HTTP method", meth)
	}
	if wl := m.GetWorkload(); wl != "" {
		if kind, name, ok := strings.Cut(wl, "/"); !ok || kind == "" || name == "" {
			return nil, fmt.Sprintf("match.workload %q must be <kind>/<name>, e.g. deployment/web", wl)
		}
	}
	switch n := req.GetMaxEventsPerSecond(); {
	case n == 0:
		req.MaxEventsPerSecond = DefaultEventsPerSecond
	case n > MaxEventsPerSecond:
		req.MaxEventsPerSecond = MaxEventsPerSecond
	}
	return req, ""
}

// isToken says whether s is an RFC 9110 token (a method).
func isToken(s string) bool {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// tap resolves the pods, fans out and streams the merged events.
func (s *Server) tap(w http.ResponseWriter, r *http.Request, user *User, t Target, req *api.ObserveRequest) {
	maxTaps := s.MaxTaps
	if maxTaps <= 0 {
		maxTaps = DefaultMaxTaps
	}
	if n := s.active.Add(1); n > int64(maxTaps) {
		s.active.Add(-1)
		w.Header().Set("Retry-After", "5")
		s.refuse(w, http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests, fmt.Sprintf("this tap API replica serves %d taps already; retry later", maxTaps))
		return
	}
	defer s.active.Add(-1)
	maxPods := s.MaxPods
	if maxPods <= 0 {
		maxPods = DefaultMaxPods
	}
	ctx := r.Context()
	rctx, rcancel := context.WithTimeout(ctx, apiTimeout)
	pods, total, err := resolvePods(rctx, s.Reader, t, maxPods, s.ProxyTapPort)
	rcancel()
	var nf *NotFoundError
	var np *NoPodsError
	switch {
	case errors.As(err, &nf):
		s.refuse(w, http.StatusNotFound, metav1.StatusReasonNotFound, nf.Error())
		return
	case errors.As(err, &np):
		s.refuse(w, http.StatusNotFound, metav1.StatusReasonNotFound, np.Error())
		return
	case err != nil:
		s.Log.Error(err, "Resolving a tap target failed", "target", t.String())
		s.refuse(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "the tap API could not read "+t.String()+"; retry")
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan *api.TapEvent, 64)
	done := make(chan struct{})
	wait, err := s.Fanout.Start(ctx, pods, req, events, nil)
	if err != nil {
		s.Log.Error(err, "Cannot start the tap streams", "target", t.String())
		s.refuse(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "the tap API cannot reach proxies right now (its tap identity or the trust roots are not available); retry later")
		return
	}
	go func() { wait(); close(done) }()
	defer func() { cancel(); <-done }()
	s.Log.Info("Tap started", "user", user.Name, "target", t.String(), "pods", len(pods), "ofPods", total)
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Weft-Tap-Pods", fmt.Sprintf("%d/%d", len(pods), total))
	w.WriteHeader(http.StatusOK)
	countRequest(http.StatusOK)
	ActiveTaps.Inc()
	defer ActiveTaps.Dec()
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	// The merged stream is bounded as each proxy's is: what exceeds the rate is
	// dropped here and counted in the next event that goes out.
	lim := rate.NewLimiter(rate.Limit(req.GetMaxEventsPerSecond()), int(req.GetMaxEventsPerSecond()))
	var dropped uint64
	opts := protojson.MarshalOptions{}
	// A drop is reported with the next event that goes out; when none comes (the
	// burst that caused it is over), an event with only dropped set reports it.
	report := time.NewTicker(time.Second)
	defer report.Stop()
	for {
		var ev *api.TapEvent
		select {
		case <-report.C:
			if dropped == 0 {
				continue
			}
			ev = &api.TapEvent{Time: timestamppb.Now()}
		case ev = <-events:
		case <-done:
			// Every part has ended: send what they left in the channel, then end
			// the response.
			select {
			case ev = <-events:
			default:
				return
			}
		case <-ctx.Done():
			return
		}
		dropped += ev.GetDropped()
		if !lim.Allow() {
			dropped++
			continue
		}
		ev.Dropped, dropped = dropped, 0
		line, err := opts.Marshal(ev)
		if err != nil {
			continue
		}
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(append(line, '\n')); err != nil {
			// The client is gone or stalled: ending the handler cancels ctx and
			// with it every proxy stream.
			return
		}
		_ = rc.Flush()
	}
}

// refuse answers a tap request with an error Status and counts it.
func (s *Server) refuse(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	countRequest(code)
	writeStatus(w, code, reason, msg)
}

// writeStatus writes a metav1.Status, which kubectl and client-go turn into an error
// with its message.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(&metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg,
	})
}
