package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// forward sends r to its route and copies the response to w. It does what
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
// as it is when the server that read it put its interimSender in the context.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, rt *route) {
	h := r.Header
	removeHopByHop(h)
	if rt.dst != "" {
		h[hdrDst] = []string{rt.dst}
		h[hdrProto] = []string{rt.proto}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = noUserAgent // or the transport adds Go's
	}
	out := r
	if _, ok := r.Context().Value(interimKey{}).(interimSender); !ok {
		// Served by net/http, whose writer sends a 1xx for WriteHeader(1xx).
		out = r.WithContext(context.WithValue(r.Context(), interimKey{}, interimSender(headerInterim{w})))
	}
	out.URL.Scheme, out.URL.Host = "http", rt.host
	out.RequestURI, out.Close = "", false
	if r.Body != nil {
		defer r.Body.Close()
	}
	if r.ContentLength == 0 {
		out.Body = nil // nothing to send, and nothing for a retry to replay
	}
	res, err := rt.roundTrip(out)
	if err == nil && res.StatusCode == http.StatusSwitchingProtocols {
		res.Body.Close()
		err = errors.New("backend switched protocols without an Upgrade request")
	}
	if err != nil {
		s.proxyError(w, r, rt, err)
		return
	}
	defer res.Body.Close()
	removeHopByHop(res.Header)
	wh := w.Header()
	for k, vs := range res.Header {
		wh[k] = append(wh[k], vs...)
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		wh["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	closeUnlessBodyEnded(w, r)
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
		s.log.V(1).Info("Response body failed midway", "authority", r.Host, "error", err.Error())
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
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
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

// isUpgrade says whether r asks to switch protocols: it goes through
// httputil.ReverseProxy, which hands the connection over to a byte copy.
func isUpgrade(r *http.Request) bool {
	_, ok := r.Header["Upgrade"]
	return ok && r.ProtoMajor == 1
}

// interimSender sends informational (1xx) responses ahead of the final one: the
// response writers of Weft's own servers, or headerInterim for any other. It rides in
// the request's context under interimKey, so that a transport can pass on what it
// receives without a client trace (and the copies of the request it takes).
type interimSender interface {
	sendInterim(code int, h http.Header)
}

type interimKey struct{}

// headerInterim sends 1xx responses through any http.ResponseWriter: the fields go
// into its header map for WriteHeader(1xx), and out again.
type headerInterim struct{ w http.ResponseWriter }

func (hi headerInterim) sendInterim(code int, h http.Header) {
	wh := hi.w.Header()
	for k, vs := range h {
		wh[k] = append(wh[k], vs...)
	}
	hi.w.WriteHeader(code)
	clear(wh)
}

// passInterim passes on a 1xx response a transport received for the request with
// context ctx: to its client trace when it has one (ReverseProxy's, for Upgrade
// requests), else to the interimSender forward put there.
func passInterim(ctx context.Context, code int, h http.Header) error {
	if trace := httptrace.ContextClientTrace(ctx); trace != nil {
		if trace.Got1xxResponse != nil {
			return trace.Got1xxResponse(code, textproto.MIMEHeader(h))
		}
		return nil
	}
	if s, ok := ctx.Value(interimKey{}).(interimSender); ok {
		s.sendInterim(code, h)
	}
	return nil
}

// interimTrace is http.Transport for requests whose 1xx responses go to an
// interimSender: http.Transport reports them only to a client trace.
type interimTrace struct{ *http.Transport }

func (t interimTrace) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	if s, ok := ctx.Value(interimKey{}).(interimSender); ok && httptrace.ContextClientTrace(ctx) == nil {
		r = r.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				s.sendInterim(code, http.Header(h))
				return nil
			},
		}))
	}
	return t.Transport.RoundTrip(r)
}
