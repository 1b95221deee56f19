package httpmsg

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
)

// InterimSender sends informational (1xx) responses ahead of the final one: the
// response writers of Weft's own servers, or HeaderInterim for any other. It rides in
// the request's context (WithInterimSender), so that a client (Weft's HTTP/1.1 and
// HTTP/2 clients, http.Transport through InterimTrace) can pass on what it receives
// without a client trace and the copies of the request that takes.
type InterimSender interface {
	SendInterim(code int, h http.Header)
}

type interimKey struct{}

// WithInterimSender returns ctx carrying s.
func WithInterimSender(ctx context.Context, s InterimSender) context.Context {
	return context.WithValue(ctx, interimKey{}, s)
}

// SenderContext is a context carrying an InterimSender, made to live inside a value
// its server allocates for each request anyway (the response writer): the request's
// context then costs no allocation of its own, where WithInterimSender's costs one.
// Everything but the sender's key is its Context's, cancellation included (the
// context package finds the cancelCtx underneath through Value, as it does through
// WithValue's context).
type SenderContext struct {
	context.Context
	Sender InterimSender
}

// Value is the sender for InterimSenderFrom's key, else the embedded context's value.
func (c *SenderContext) Value(key any) any {
	if key == (interimKey{}) {
		return c.Sender
	}
	return c.Context.Value(key)
}

// InterimSenderFrom is the InterimSender ctx carries.
func InterimSenderFrom(ctx context.Context) (InterimSender, bool) {
	s, ok := ctx.Value(interimKey{}).(InterimSender)
	return s, ok
}

// HeaderInterim sends 1xx responses through any http.ResponseWriter: the fields go
// into its header map for WriteHeader(1xx), and out again.
type HeaderInterim struct{ W http.ResponseWriter }

func (hi HeaderInterim) SendInterim(code int, h http.Header) {
	wh := hi.W.Header()
	for k, vs := range h {
		wh[k] = append(wh[k], vs...)
	}
	hi.W.WriteHeader(code)
	clear(wh)
}

// PassInterim passes on a 1xx response a client received for the request with
// context ctx: to its client trace when it has one (httputil.ReverseProxy's, for
// Upgrade requests), else to the InterimSender in ctx.
func PassInterim(ctx context.Context, code int, h http.Header) error {
	if trace := httptrace.ContextClientTrace(ctx); trace != nil {
		if trace.Got1xxResponse != nil {
			return trace.Got1xxResponse(code, textproto.MIMEHeader(h))
		}
		return nil
	}
	if s, ok := InterimSenderFrom(ctx); ok {
		s.SendInterim(code, h)
	}
	return nil
}

// InterimTrace is an http.Transport for requests whose 1xx responses go to an
// InterimSender: http.Transport reports them only to a client trace.
type InterimTrace struct{ *http.Transport }

func (t InterimTrace) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	if s, ok := InterimSenderFrom(ctx); ok && httptrace.ContextClientTrace(ctx) == nil {
		r = r.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				s.SendInterim(code, http.Header(h))
				return nil
			},
		}))
	}
	return t.Transport.RoundTrip(r)
}
