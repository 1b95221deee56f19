package server

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/weftmesh/weft/proxy/internal/h1"
	"github.com/weftmesh/weft/proxy/internal/h2"
	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"github.com/weftmesh/weft/proxy/pipeline"
)

// The HTTP servers an accepted connection is given to once detection (and, from a
// peer proxy, mTLS) told what it speaks. Every HTTP/1.1 connection starts in Weft's
// HTTP/1.1 server (proxy/internal/h1), which hands net/http's server (srv) a
// connection only with one request whose header it checked; every HTTP/2 connection
// is Weft's HTTP/2 server's (proxy/internal/h2). All of them serve srv's handler: the
// pipeline's ServeOutbound or ServeInbound.

// serveH1 serves an HTTP/1.1 connection until it closes or is handed over to srv
// through l. info reaches handlers through the request context.
func (s *Server) serveH1(pc *peekConn, info *pipeline.ConnInfo, srv *http.Server, l *chanListener) {
	s.h1.ServeConn(pc, h1.ServeConnOpts{
		Context: serverContext(info, srv),
		Handler: srv.Handler,
		HandOver: func(nc net.Conn) {
			// The header was checked whole: net/http may serve this one request
			// (h1.Guard then closes the connection after it).
			info.H1Checked.Store(true)
			if !l.push(&infoConn{Conn: nc, info: info}) {
				nc.Close()
			}
		},
	})
}

// serveMeshH2 runs a weft.h2 connection whose TLS handshake is done, until it ends.
func (s *Server) serveMeshH2(nc net.Conn, info *pipeline.ConnInfo) {
	s.serveH2(nc, info, "weft.h2", s.inHTTP)
}

// serveH2C runs an app-facing HTTP/2 connection with prior knowledge (detection saw
// the client preface), on the outbound port (srv is s.outHTTP) or the plaintext
// inbound port (s.inHTTP), until it ends.
func (s *Server) serveH2C(pc *peekConn, info *pipeline.ConnInfo, srv *http.Server) {
	s.serveH2(pc, info, "h2c", srv)
}

// serveH2 runs an HTTP/2 connection, serving its requests with srv's handler.
func (s *Server) serveH2(nc net.Conn, info *pipeline.ConnInfo, proto string, srv *http.Server) {
	s.h2.ServeConn(nc, h2.ServeConnOpts{Context: serverContext(info, srv), Handler: srv.Handler, Proto: proto, Peer: info.PeerID})
}

// serverContext is the parent of a connection's request contexts: its ConnInfo, and
// srv as http.ServerContextKey, which httputil.ReverseProxy needs to abort a
// response whose body fails midway (panic(http.ErrAbortHandler)) instead of ending
// it cleanly.
func serverContext(info *pipeline.ConnInfo, srv *http.Server) context.Context {
	return context.WithValue(pipeline.WithConnInfo(context.Background(), info), http.ServerContextKey, srv)
}

// workerPool runs handlers on goroutines that outlive one request, so that the
// stack a handler grew (TLS, the reverse proxy, the app's HTTP client) is used again
// instead of growing from its initial size for every stream. Idle workers exit after
// workerIdle.
type workerPool struct {
	tasks chan httpmsg.Task
}

const workerIdle = 30 * time.Second

func newWorkerPool() *workerPool { return &workerPool{tasks: make(chan httpmsg.Task)} }

func (p *workerPool) run(task httpmsg.Task) {
	select {
	case p.tasks <- task: // an idle worker took it
	default:
		go p.work(task)
	}
}

func (p *workerPool) work(task httpmsg.Task) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		task.RunTask()
		task = nil // not kept alive while idle
		t.Reset(workerIdle)
		select {
		case task = <-p.tasks:
		case <-t.C:
			return
		}
	}
}
