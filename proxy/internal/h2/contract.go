package h2

import (
	"context"
	"net/http"

	"github.com/weftmesh/weft/proxy/internal/httpmsg"
)

// Server serves HTTP/2 connections with prior knowledge (the preface first, no
// upgrade, no ALPN of its own: the caller terminated TLS and chose HTTP/2). Its only
// contract with the rest of the proxy is the http.Handler of each connection and the
// fields below, as golang.org/x/net/http2's Server.ServeConn.
type Server struct {
	// Run runs a stream's handler. The proxy passes a pool of goroutines whose grown
	// stacks are reused; nil starts a goroutine per stream.
	Run func(httpmsg.Task)
	// Log receives connection failures any peer can cause (Info: give it a
	// debug-level logger) and handler panics (Error). nil logs nothing.
	Log Logger
	// Drain, when set, registers every connection for graceful shutdown: Drain's
	// owner calls GoAway, and the connection tells the peer to open no more streams
	// and closes when the open ones are done. A connection Drain refuses (shutting
	// down already) is closed at once.
	Drain Draining
}

// Logger is what the protocol packages log to; logr.Logger satisfies it.
type Logger interface {
	Info(msg string, keysAndValues ...any)
	Error(err error, msg string, keysAndValues ...any)
}

// Draining is a registry of connections that graceful shutdown asks to finish.
type Draining interface {
	// Add registers c; false when shutting down already.
	Add(c interface{ GoAway() }) bool
	Remove(c interface{ GoAway() })
}

// ServeConnOpts are one connection's own: what its streams' handler is and sees.
type ServeConnOpts struct {
	// Context is the parent of every stream's context; it carries what the caller
	// learned about the connection (the peer's identity, the original destination),
	// and should carry http.ServerContextKey: httputil.ReverseProxy aborts a
	// response whose body fails midway (panic(http.ErrAbortHandler), which the
	// stream turns into RST_STREAM) only when it believes a server will recover the
	// panic; without it a truncated body would end cleanly.
	Context context.Context
	// Handler serves every stream's request.
	Handler http.Handler
	// Proto names the protocol in logs ("weft.h2", "h2c").
	Proto string
	// Peer names the client in logs: its identity; "" names it by its address.
	Peer string
}
