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

// Package tapclient is the client side of the tap API: it posts a tap request through
// the kube-apiserver (so the user's own credentials and RBAC apply), reads the stream
// of events, and renders them as `weft tap` and `weft top` print them.
package tapclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/proxy/api"
)

// maxLine bounds one event's line: an event is well under 4 KiB.
const maxLine = 1 << 20

// Request is one tap.
type Request struct {
	// Namespace, and Resource/Name of the workload (Resource "namespaces" with Name
	// equal to Namespace taps the whole namespace).
	Namespace string
	Resource  string
	Name      string
	Observe   *api.ObserveRequest
	// OnOpen, when set, is called once the tap API accepted the tap (before the first
	// event): a caller that answers its own client (the dashboard) can tell a refusal
	// from a stream that is open but quiet.
	OnOpen func()
}

// Path is the request's URL path under the API server.
func (r Request) Path() string {
	p := "/apis/" + tap.Group + "/" + tap.Version + "/watch/namespaces/" + r.Namespace
	if r.Resource != "namespaces" {
		p += "/" + r.Resource + "/" + r.Name
	}
	return p + "/" + tap.Subresource
}

// Watch posts req through the API server of cfg and calls fn with each event until
// ctx is done, the stream ends, or fn returns an error. A refusal by the tap API (not
// permitted, no such workload) comes back as an *apierrors.StatusError with the
// server's message.
func Watch(ctx context.Context, cfg *rest.Config, req Request, fn func(*api.TapEvent) error) error {
	// The target becomes a URL path: a name with "/" or ".." would reach another API.
	if msg := tap.ValidateTarget(tap.Target{Namespace: req.Namespace, Resource: req.Resource, Name: req.Name}); msg != "" {
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest,
			Reason: metav1.StatusReasonBadRequest, Message: msg}}
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("the API server client: %w", err)
	}
	// A tap is a long stream: no overall timeout (cfg.Timeout would cut it).
	hc.Timeout = 0
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return fmt.Errorf("the API server URL: %w", err)
	}
	obs := req.Observe
	if obs == nil {
		obs = &api.ObserveRequest{}
	}
	body, err := protojson.Marshal(obs)
	if err != nil {
		return err
	}
	u := strings.TrimSuffix(base.String(), "/") + req.Path()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", tap.ContentType+", application/json")
	resp, err := hc.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	if req.OnOpen != nil {
		req.OnOpen()
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		ev := &api.TapEvent{}
		if err := protojson.Unmarshal(line, ev); err != nil {
			return fmt.Errorf("the tap API sent a line that is not a TapEvent: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading the tap stream: %w", err)
	}
	return nil
}

// aggregatorUnavailable is all the kube-apiserver says when the APIService is not
// Available (no weft-controller replica answers its discovery, or its CA is missing).
const aggregatorUnavailable = "service unavailable"

// unavailableHint replaces it with what to check.
const unavailableHint = aggregatorUnavailable + ": the tap API (APIService v1alpha1.tap.weft.dev) is not available; " +
	"check `kubectl get apiservice v1alpha1.tap.weft.dev` and that weft-controller is running, then retry"

// statusError turns a refusal into the API server's Status error (the tap API and the
// aggregator both answer with a metav1.Status).
func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var st metav1.Status
	if err := json.Unmarshal(b, &st); err == nil && st.Kind == "Status" {
		if st.Code == 0 {
			st.Code = int32(resp.StatusCode)
		}
		if st.Code == http.StatusServiceUnavailable && strings.TrimSpace(st.Message) == aggregatorUnavailable {
			st.Message = unavailableHint
		}
		return &apierrors.StatusError{ErrStatus: st}
	}
	msg := strings.TrimSpace(string(b))
	if resp.StatusCode == http.StatusServiceUnavailable && msg == aggregatorUnavailable {
		msg = unavailableHint
	}
	if resp.StatusCode == http.StatusNotFound && msg == "" || strings.Contains(msg, "the server could not find the requested resource") {
		msg = "the tap API (APIService v1alpha1.tap.weft.dev) is not installed or not available: run `weft check`"
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: int32(resp.StatusCode), Message: msg}}
}

// kinds maps what a user types (kubectl's names and short names) to the tap API's
// resources.
var kinds = map[string]string{
	"ns": "namespaces", "namespace": "namespaces", "namespaces": "namespaces",
	"po": "pods", "pod": "pods", "pods": "pods",
	"deploy": "deployments", "deployment": "deployments", "deployments": "deployments",
	"rs": "replicasets", "replicaset": "replicasets", "replicasets": "replicasets",
	"sts": "statefulsets", "statefulset": "statefulsets", "statefulsets": "statefulsets",
	"ds": "daemonsets", "daemonset": "daemonsets", "daemonsets": "daemonsets",
	"job": "jobs", "jobs": "jobs",
}

// ParseTarget reads "deploy/web" (or "deploy web" as two arguments, or "ns/shop") into
// the tap API's resource and name.
func ParseTarget(args []string) (resource, name string, err error) {
	var kind string
	switch len(args) {
	case 1:
		var ok bool
		if kind, name, ok = strings.Cut(args[0], "/"); !ok {
			if r := kinds[strings.ToLower(args[0])]; r == "namespaces" {
				return "", "", fmt.Errorf("name the namespace: ns/<name>")
			}
			return "", "", fmt.Errorf("%q: want <resource>/<name>, e.g. deploy/web", args[0])
		}
	case 2:
		kind, name = args[0], args[1]
	default:
		return "", "", fmt.Errorf("want one target, <resource>/<name> (e.g. deploy/web), got %q", args)
	}
	r, ok := kinds[strings.ToLower(kind)]
	if !ok || name == "" {
		return "", "", fmt.Errorf("%q cannot be tapped: use ns, pod, deploy, rs, sts, ds or job followed by /<name>", kind+"/"+name)
	}
	return r, name, nil
}

// WorkloadMatch turns a --to target ("deploy/backend") into TapMatch.workload
// ("deployment/backend", the proxy's spelling: singular kind).
func WorkloadMatch(s string) (string, error) {
	r, name, err := ParseTarget([]string{s})
	if err != nil {
		return "", err
	}
	if r == "namespaces" {
		return "", fmt.Errorf("--to %q: name a workload; use --to-namespace for a namespace", s)
	}
	return strings.TrimSuffix(r, "s") + "/" + name, nil
}
