// Package httpmsg is what HTTP messages mean to the proxy whatever protocol carries
// them, shared by Weft's HTTP/1.1 (proxy/internal/h1) and HTTP/2 (proxy/internal/h2)
// code and the request pipeline above them: how an informational (1xx) response is
// handed from a client to the server answering the same request, the trailers a
// handler declared or set, a Content-Length's value, and the copy buffers bodies go
// through. It imports only the standard library.
package httpmsg

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
)

// HeaderProxyError says why the proxy itself answered with an error status. Set by the
// pipeline and by the HTTP/1.1 server's own 400s, so it lives below both.
const HeaderProxyError = "Weft-Proxy-Error"

// Max1xxResponses is how many informational responses may precede the final one on
// either protocol (http.Transport's limit): a peer cannot keep a request waiting with
// an endless run of them.
const Max1xxResponses = 5

// ContentLength reads a Content-Length field: -1 when there is none or it is not a
// single non-negative number.
func ContentLength(h http.Header) int64 {
	if v := h["Content-Length"]; len(v) == 1 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			return n
		}
	}
	return -1
}

// DeclaredTrailers is the Trailer map a Trailer field announces (names with no values
// yet), or nil when it announces none.
func DeclaredTrailers(h http.Header) http.Header {
	var t http.Header
	for _, v := range h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = textproto.TrimString(k); k != "" {
				if t == nil {
					t = http.Header{}
				}
				t[http.CanonicalHeaderKey(k)] = nil
			}
		}
	}
	return t
}

// TrailerFields collects the trailer fields a handler set in its header map h: those
// announced in the Trailer field (declared), and any with http.TrailerPrefix. nil when
// there are none.
func TrailerFields(declared, h http.Header) http.Header {
	var t http.Header
	for k := range declared {
		if vs := h[k]; len(vs) > 0 {
			if t == nil {
				t = http.Header{}
			}
			t[k] = vs
		}
	}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			if t == nil {
				t = http.Header{}
			}
			t[http.CanonicalHeaderKey(name)] = vs
		}
	}
	return t
}

// Task is one request's handler, as a server hands it to be run: a pointer the server
// allocates for the request anyway (its response writer), so handing it over costs
// no closure (one allocation a request on each proxy).
type Task interface{ RunTask() }

// CopyBuffers recycles the 32 KiB buffers request and response bodies are copied
// through (the pipeline's forward, the HTTP/2 client's request bodies), which would
// otherwise be allocated per request. It holds *[]byte.
var CopyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
