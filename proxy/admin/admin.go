// Package admin is the proxy's admin HTTP server (port 4191): metrics, readiness,
// liveness, shutdown and the run-time log level.
package admin

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/proxy/metrics"
)

// LevelVar reads and sets the log level at run time.
type LevelVar interface {
	String() string
	Set(string) error
}

// Admin serves the admin endpoints. Every field but Log may be nil.
type Admin struct {
	Metrics *metrics.Registry
	// Ready reports readiness (a valid certificate is held and shutdown has not
	// started). Nil means always ready.
	Ready func() bool
	// Shutdown starts a graceful shutdown; it must return quickly.
	Shutdown func()
	Level    LevelVar
	Log      logr.Logger
}

// Handler returns the admin mux.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if a.Metrics != nil {
			_ = a.Metrics.WriteText(w)
		}
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if a.Ready != nil && !a.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "live\n")
	})
	mux.HandleFunc("/shutdown", loopbackOnly(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		a.Log.Info("Shutdown requested through the admin server", "client", r.RemoteAddr)
		io.WriteString(w, "shutdown\n")
		if a.Shutdown != nil {
			a.Shutdown()
		}
	}))
	mux.HandleFunc("/proxy-log-level", loopbackOnly(func(w http.ResponseWriter, r *http.Request) {
		if a.Level == nil {
			http.Error(w, "log level is fixed", http.StatusNotImplemented)
			return
		}
		switch r.Method {
		case http.MethodGet:
			io.WriteString(w, a.Level.String()+"\n")
		case http.MethodPut:
			b, err := io.ReadAll(io.LimitReader(r.Body, 64))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if err := a.Level.Set(strings.TrimSpace(string(b))); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			a.Log.Info("Log level changed", "level", a.Level.String())
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Allow", "GET, PUT")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	}))
	return mux
}

// loopbackOnly refuses clients that are not on this host's loopback: shutting the
// proxy down or making it verbose must not be possible from the network.
func loopbackOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip, perr := netip.ParseAddr(host)
		if err != nil || perr != nil || !ip.Unmap().IsLoopback() {
			http.Error(w, "loopback clients only", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}
