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

	"github.com/weftmesh/weft/internal/promtext"
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
		w.Header().Set("Content-Type", promtext.ContentType)
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
	mux.HandleFunc("/shutdown", a.localOnly(func(w http.ResponseWriter, r *http.Request) {
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
	mux.HandleFunc("/proxy-log-level", a.localOnly(func(w http.ResponseWriter, r *http.Request) {
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

// localOnly guards the endpoints that change the proxy's state (or read its
// settings): only another process on this host's loopback may call them. A client
// from the network is refused by its address; the proxy's own relays, which connect
// from loopback on behalf of peers and apps, by the socket being this process's
// (see heldBySelf). When the socket table cannot be read the request is refused:
// a guard that cannot look must not wave everyone through.
func (a *Admin) localOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		client, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !client.Addr().Unmap().IsLoopback() {
			http.Error(w, "loopback clients only: call this endpoint from inside the pod (127.0.0.1 or [::1])", http.StatusForbidden)
			return
		}
		var server netip.AddrPort
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			server, _ = netip.ParseAddrPort(la.String())
		}
		self, err := heldBySelf(client, server)
		switch {
		case err != nil:
			a.Log.V(1).Info("Refusing admin write: cannot check the client's socket", "client", r.RemoteAddr, "path", r.URL.Path, "error", err.Error())
			http.Error(w, "cannot verify that this request does not come through one of the proxy's own relays ("+err.Error()+"); call from another process on the pod's loopback and keep the connection open until the answer", http.StatusForbidden)
		case self:
			// Only at V(1): whoever made the proxy relay this may repeat it at will.
			a.Log.V(1).Info("Refusing admin write relayed by the proxy itself", "client", r.RemoteAddr, "path", r.URL.Path)
			http.Error(w, "refused: this request reached the admin server through the proxy's own relay; only other processes on the pod's loopback may call it", http.StatusForbidden)
		default:
			h(w, r)
		}
	}
}
