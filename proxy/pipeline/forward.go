package pipeline

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/internal/h1"
	"github.com/weftmesh/weft/proxy/internal/h2"
	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"github.com/weftmesh/weft/proxy/router"
	"github.com/weftmesh/weft/proxy/transport"
	"golang.org/x/net/http/httpguts"
)

// forward sends r to its upstream and copies the response to w. It does what
// httputil.ReverseProxy does for a request that is not an Upgrade, without the copies
// ReverseProxy makes of every request (a deep clone, its header map, a second context
// copy) and the media-type parse of every response:
//   - the hop-by-hop fields of RFC 9110 §7.6.1 (Connection and every field it names,
//     Proxy-Connection, Keep-Alive, Proxy-Authenticate, Proxy-Authorization, TE except
//     "trailers", Trailer, Transfer-Encoding, Upgrade) leave both directions;
//   - 1xx responses are passed on as they come; trailers are forwarded;
//   - a response of unknown length (and server-sent events) is flushed as it comes;
//   - a body that fails midway aborts the response (panic(http.ErrAbortHandler),
//     which the server turns into a closed connection or a reset stream), so the
//     client does not take it as whole.
//
// Everything else an app sent travels unchanged, X-Forwarded-* included: the proxy is
// transparent. The request is the handler's own and is modified in place; it is sent
// as it is when the server that read it put its httpmsg.InterimSender in the context.
func (p *Pipeline) forward(w http.ResponseWriter, r *http.Request, up *upstream) {
	h := r.Header
	removeHopByHop(h)
	if up.Dst != "" {
		h[hdrDst] = []string{up.Dst}
		h[hdrProto] = []string{up.Proto}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = noUserAgent // or the transport adds Go's
	}
	out := r
	if _, ok := httpmsg.InterimSenderFrom(r.Context()); !ok {
		// Served by net/http, whose writer sends a 1xx for WriteHeader(1xx).
		out = r.WithContext(httpmsg.WithInterimSender(r.Context(), httpmsg.HeaderInterim{W: w}))
	}
	out.URL.Scheme, out.URL.Host = "http", up.Host
	out.RequestURI, out.Close = "", false
	if r.Body != nil {
		defer r.Body.Close()
	}
	if r.ContentLength == 0 {
		out.Body = nil // nothing to send, and nothing for a retry to replay
	}
	if up.tap != nil && out.Body != nil && out.Body != http.NoBody {
		// Counted on a copy: the handler's request keeps its own body (h1.BodyOf).
		if out == r {
			out = r.WithContext(r.Context())
		}
		out.Body = &tapBody{ReadCloser: out.Body, x: up.tap}
	}
	res, err := up.roundTrip(out)
	if err == nil && res.StatusCode == http.StatusSwitchingProtocols {
		res.Body.Close()
		err = errors.New("backend switched protocols without an Upgrade request")
	}
	if err != nil {
		p.proxyError(w, r, up, err)
		return
	}
	defer res.Body.Close()
	removeHopByHop(res.Header)
	delete(res.Header, hdrUnprocessed) // only ever the proxies' own (see hdrUnprocessed)
	wh := w.Header()
	for k, vs := range res.Header {
		if prev, ok := wh[k]; ok {
			wh[k] = append(prev, vs...)
			continue
		}
		// The response is ours and not changed after this: its slices are handed
		// over instead of copied (one allocation per field saved), capped so that
		// whoever appends to the writer's copy later cannot write into them.
		wh[k] = vs[:len(vs):len(vs)]
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		wh["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	h1.CloseUnlessBodyEnded(w, r)
	w.WriteHeader(res.StatusCode)
	// A body of unknown length (a stream, server-sent events) is passed on as it
	// comes, and its head at once: the client may wait for it before the first byte
	// of body. So is a head that announces trailers, which makes the body chunked.
	var rc *http.ResponseController // only a streamed response needs one
	flush := res.ContentLength < 0 || strings.HasPrefix(textproto.TrimString(res.Header.Get("Content-Type")), "text/event-stream")
	if flush || announced > 0 {
		rc = http.NewResponseController(w)
		_ = rc.Flush()
	}
	if err := copyBody(w, res.Body, rc, flush); err != nil {
		p.o.Log.V(1).Info("Response body failed midway", "authority", r.Host, "error", err.Error())
		panic(http.ErrAbortHandler)
	}
	// Trailers announced up front travel under their names; any others (learned
	// only at the end) under http.TrailerPrefix.
	for k, vs := range res.Trailer {
		if announced != len(res.Trailer) {
			k = http.TrailerPrefix + k
		}
		wh[k] = vs
	}
}

// noUserAgent keeps the request without User-Agent when the app sent none. Shared and
// never written to.
var noUserAgent = []string{""}

// copyBody copies a response body, flushing through rc after every write when flush
// is set.
func copyBody(w io.Writer, body io.Reader, rc *http.ResponseController, flush bool) error {
	bp := httpmsg.CopyBuffers.Get().(*[]byte)
	defer httpmsg.CopyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if flush {
				if err := rc.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// hopByHop are the fields that only concern one connection (RFC 9110 §7.6.1, and
// the ones httputil.ReverseProxy drops).
var hopByHop = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop fields of h, and those Connection names. A TE
// that accepts trailers is kept as "TE: trailers" (gRPC needs it end to end).
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	trailers := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	for _, k := range hopByHop {
		delete(h, k)
	}
	if trailers {
		h["Te"] = teTrailers
	}
}

var teTrailers = []string{"trailers"}

// newUpgradeProxy returns the ReverseProxy for Upgrade requests (WebSocket and the
// like), which it hands over to a byte copy when the backend answers 101; every other
// request goes through forward. It only moves the request to the upstream in its
// context and keeps what forward keeps: hop-by-hop fields go (RFC 9110 §7.6.1),
// X-Forwarded-* and Forwarded stay, which ReverseProxy's Rewrite would otherwise
// remove.
func (p *Pipeline) newUpgradeProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			up := pr.In.Context().Value(upstreamKey{}).(*upstream)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = up.Host
			// Request trailers get their values when the body has been read to
			// its end, after Rewrite: the outgoing request must share the map
			// rather than hold Clone's early copy, or they arrive empty.
			pr.Out.Trailer = pr.In.Trailer
			for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
			if up.Dst != "" {
				pr.Out.Header[hdrDst] = []string{up.Dst}
				pr.Out.Header[hdrProto] = []string{up.Proto}
			}
		},
		// An Upgrade the backend refused leaves an HTTP/1.1 connection that
		// net/http's server would keep for requests nobody checked (h1.Guard).
		ModifyResponse: func(res *http.Response) error {
			delete(res.Header, hdrUnprocessed) // only ever the proxies' own
			if res.StatusCode != http.StatusSwitchingProtocols {
				res.Header["Connection"] = []string{"close"}
			}
			return nil
		},
		Transport:  dispatch{},
		BufferPool: bufPool{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.proxyError(w, r, r.Context().Value(upstreamKey{}).(*upstream), err)
		},
		ErrorLog: p.o.ErrorLog,
	}
}

// proxyError answers a request that could not be forwarded: 504 for a timeout, else
// 502 (for gRPC the matching grpc-status), with Weft-Proxy-Error saying why.
func (p *Pipeline) proxyError(w http.ResponseWriter, r *http.Request, up *upstream, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() == context.Canceled {
		// The client went away; there is nobody to answer.
		return
	}
	if h1.IsUpgrade(r) {
		// Not upgraded: the connection ends with this answer (see h1.Guard).
		w.Header()["Connection"] = []string{"close"}
	}
	if up.attempts != nil {
		// The proxy's own answer is the route's response too: without the CORS
		// headers a browser would hide its status from the page.
		up.attempts.cors.Apply(w.Header())
	}
	if b := h1.BodyOf(r); b != nil && !b.Ended() {
		// The client's body did not end cleanly: the connection cannot carry
		// another request. When it failed (malformed framing, or cut short), the
		// request is the client's fault: 400.
		w.Header()["Connection"] = []string{"close"}
		if berr := b.Failed(); berr != nil {
			p.o.Log.V(1).Info("Request body failed", "authority", r.Host, "error", berr.Error())
			w.Header().Set(hdrError, h1.ErrMalformedBody.Error())
			w.WriteHeader(http.StatusBadRequest)
			return
		}
	}
	p.o.Log.V(1).Info("Proxying failed", "authority", r.Host, "error", err.Error())
	// The route's request timeout, or the last attempt's backend timeout:
	// 504, like a gateway that waited in vain (RFC 9110 §15.6.5).
	timeout := r.Context().Err() == context.DeadlineExceeded || (up.attempts != nil && up.attempts.timedOut)
	reason := errorReason(err)
	if timeout {
		reason = "timeout"
	}
	w.Header().Set(hdrError, reason)
	if _, unsent := transport.Unsent(err); unsent && up.attempts == nil && ConnInfoFrom(r.Context()).Mesh {
		// Inbound from a peer proxy, and the local application never got the
		// request (it refused the connection: it is stopping, or gone): the
		// client proxy may send it to another endpoint.
		w.Header().Set(hdrError, "application refused the connection")
		w.Header()[hdrUnprocessed] = []string{"app-refused"}
	}
	if errors.Is(err, h2.ErrHeaderListTooLarge) {
		// Over the peer proxy's header list limit: 431 (RFC 6585 §5).
		w.Header().Set(hdrError, "request header fields too large for the mesh")
		w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	if router.IsGRPC(r) {
		// gRPC clients read grpc-status, not the HTTP status. A peer that
		// reset the stream when the call's own grpc-timeout expired (gRPC
		// servers do) is the call's deadline, not an unavailable server.
		code := grpcwire.Unavailable
		if mw, ok := w.(*metricsWriter); timeout || (ok && grpcDeadlinePassed(r.Header, mw.start)) {
			code = grpcwire.DeadlineExceeded
		}
		writeGRPCError(w, code, reason)
		return
	}
	if timeout {
		w.WriteHeader(http.StatusGatewayTimeout)
		return
	}
	w.WriteHeader(http.StatusBadGateway)
}

func errorReason(err error) string {
	switch {
	case errors.Is(err, transport.ErrNoIdentity):
		return "no identity"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "connection failed"
}

// dispatch sends a request through the transport its upstream chose.
type dispatch struct{}

func (dispatch) RoundTrip(r *http.Request) (*http.Response, error) {
	return r.Context().Value(upstreamKey{}).(*upstream).roundTrip(r)
}

// bufPool recycles the 32 KiB copy buffers ReverseProxy would otherwise allocate per
// request.
type bufPool struct{}

func (bufPool) Get() []byte  { return *httpmsg.CopyBuffers.Get().(*[]byte) }
func (bufPool) Put(b []byte) { httpmsg.CopyBuffers.Put(&b) }
