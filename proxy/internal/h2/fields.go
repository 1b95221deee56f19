package h2

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"golang.org/x/net/http2/hpack"
)

// fieldsHeader makes an http.Header of decoded header fields. The values of the
// fields seen once share one backing array, as net/textproto's reader does: one
// allocation for the message instead of one per field. Each slice is capped at its
// length, so appending to one copies it rather than overwrite its neighbour.
func fieldsHeader(fields []hpack.HeaderField) http.Header {
	h := make(http.Header, len(fields))
	values := make([]string, len(fields))
	for _, hf := range fields {
		k := http.CanonicalHeaderKey(hf.Name)
		if vs, ok := h[k]; ok {
			h[k] = append(vs, hf.Value)
			continue
		}
		values[0] = hf.Value
		h[k] = values[:1:1]
		values = values[1:]
	}
	return h
}

// addFields adds header fields to h; with declaredOnly only those h already names
// (a Trailer map's declared keys).
func addFields(h http.Header, fields []hpack.HeaderField, declaredOnly bool) {
	for _, hf := range fields {
		k := http.CanonicalHeaderKey(hf.Name)
		if _, declared := h[k]; declaredOnly && !declared {
			continue
		}
		h[k] = append(h[k], hf.Value)
	}
}

// declaredLength reads the content-length of a request or response that arrived
// over HTTP/2: -1 when there is none, an error when it is not one non-negative
// number (repeated equal values count as one, RFC 9110 §8.6), which makes the
// message malformed (RFC 9113 §8.1.1).
func declaredLength(h http.Header) (int64, error) {
	vs := h["Content-Length"]
	if len(vs) == 0 {
		return -1, nil
	}
	for _, v := range vs[1:] {
		if v != vs[0] {
			return 0, fmt.Errorf("content-length values %q disagree", vs)
		}
	}
	n, err := strconv.ParseUint(vs[0], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("bad content-length %q", vs[0])
	}
	return int64(n), nil
}

// badFields finds a connection-specific field, which HTTP/2 forbids (RFC 9113
// §8.2.2): connection, keep-alive, proxy-connection, transfer-encoding, upgrade, and
// te, which only a request may carry and only as "trailers". The message is then
// malformed.
func badFields(fields []hpack.HeaderField, request bool) error {
	for _, hf := range fields {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return fmt.Errorf("connection-specific field %q (RFC 9113 §8.2.2)", hf.Name)
		case "te":
			if !request || hf.Value != "trailers" {
				return fmt.Errorf("te: %q (RFC 9113 §8.2.2)", hf.Value)
			}
		}
	}
	return nil
}

func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// lowerHeader gives a header's HTTP/2 name, and false for the connection-specific
// fields HTTP/2 forbids (RFC 9113 §8.2.2). A name in commonLower costs no allocation;
// any other is lower-cased anew.
func lowerHeader(k string) (string, bool) {
	if lk, ok := commonLower[k]; ok {
		return lk, lk != ""
	}
	if strings.HasPrefix(k, http.TrailerPrefix) {
		return "", false
	}
	return strings.ToLower(k), true
}

// commonLower maps canonical header names to their HTTP/2 form, "" for those never
// sent.
var commonLower = map[string]string{
	"Connection": "", "Keep-Alive": "", "Proxy-Connection": "", "Transfer-Encoding": "", "Upgrade": "", "Te": "",
	"Content-Type": "content-type", "Content-Length": "content-length", "Date": "date",
	"Grpc-Status": "grpc-status", "Grpc-Message": "grpc-message", "Grpc-Encoding": "grpc-encoding",
	"Cache-Control": "cache-control", "Server": "server", "Trailer": "trailer", "Vary": "vary",
	"Content-Encoding": "content-encoding", "Location": "location", "Etag": "etag",
	"Last-Modified": "last-modified", "Set-Cookie": "set-cookie", "X-Content-Type-Options": "x-content-type-options",
	httpmsg.HeaderProxyError: strings.ToLower(httpmsg.HeaderProxyError),
	// Requests: what clients commonly send, and the names proxy/pipeline adds to every
	// request it sends to a peer proxy (hdrDst, hdrProto) or answers with.
	"Accept": "accept", "Accept-Encoding": "accept-encoding", "Accept-Language": "accept-language",
	"Authorization": "authorization", "Cookie": "cookie", "User-Agent": "user-agent",
	"Origin": "origin", "Referer": "referer", "If-None-Match": "if-none-match",
	"If-Modified-Since": "if-modified-since", "X-Forwarded-For": "x-forwarded-for",
	"X-Forwarded-Proto": "x-forwarded-proto", "X-Request-Id": "x-request-id",
	"Traceparent": "traceparent", "Tracestate": "tracestate",
	"Grpc-Timeout": "grpc-timeout", "Grpc-Accept-Encoding": "grpc-accept-encoding",
	"Weft-Dst": "weft-dst", "Weft-Proto": "weft-proto", "Weft-Unprocessed": "weft-unprocessed",
}
