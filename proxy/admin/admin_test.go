package admin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/proxy/metrics"
)

type level struct{ v string }

func (l *level) String() string { return l.v }
func (l *level) Set(s string) error {
	if s != "debug" && s != "info" {
		return errors.New("bad level")
	}
	l.v = s
	return nil
}

func TestAdmin(t *testing.T) {
	ready := false
	shutdowns := 0
	lv := &level{"info"}
	a := &Admin{Metrics: metrics.New(), Ready: func() bool { return ready }, Shutdown: func() { shutdowns++ }, Level: lv, Log: logr.Discard()}
	h := a.Handler()
	tests := []struct {
		name       string
		method     string
		path       string
		remote     string
		body       string
		setup      func()
		wantStatus int
		wantBody   string
	}{
		{"not ready without certificate", "GET", "/ready", "10.1.2.3:5000", "", nil, 503, "not ready"},
		{"ready from anywhere", "GET", "/ready", "10.1.2.3:5000", "", func() { ready = true }, 200, "ready"},
		{"live", "GET", "/live", "10.1.2.3:5000", "", nil, 200, "live"},
		{"metrics", "GET", "/metrics", "10.1.2.3:5000", "", nil, 200, "weft_detect_timeout_total"},
		{"shutdown refused from network", "POST", "/shutdown", "10.1.2.3:5000", "", nil, 403, "loopback"},
		{"shutdown needs POST", "GET", "/shutdown", "127.0.0.1:5000", "", nil, 405, ""},
		{"shutdown from loopback", "POST", "/shutdown", "127.0.0.1:5000", "", nil, 200, "shutdown"},
		{"shutdown from ipv6 loopback", "POST", "/shutdown", "[::1]:5000", "", nil, 200, "shutdown"},
		{"log level refused from network", "PUT", "/proxy-log-level", "10.1.2.3:5000", "debug", nil, 403, ""},
		{"log level get", "GET", "/proxy-log-level", "127.0.0.1:5000", "", nil, 200, "info"},
		{"log level set", "PUT", "/proxy-log-level", "127.0.0.1:5000", "debug\n", nil, 204, ""},
		{"log level reads back", "GET", "/proxy-log-level", "127.0.0.1:5000", "", nil, 200, "debug"},
		{"log level rejects junk", "PUT", "/proxy-log-level", "127.0.0.1:5000", "loud", nil, 400, "bad level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			req.RemoteAddr = tt.remote
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Fatalf("%s %s from %s: %d %q, want %d containing %q", tt.method, tt.path, tt.remote, rec.Code, rec.Body.String(), tt.wantStatus, tt.wantBody)
			}
		})
	}
	if shutdowns != 2 {
		t.Fatalf("shutdown called %d times, want 2", shutdowns)
	}
	_ = http.MethodGet
}
