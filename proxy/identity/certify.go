package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"golang.org/x/net/http2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/weftmesh/weft/internal/grpcwire"
)

// The identity API's one call, weft.identity.v1.Identity/Certify (proxy/api/identity.proto),
// made as a plain gRPC unary request over HTTP/2 (the gRPC over HTTP/2 protocol:
// a POST with content-type application/grpc, a length-prefixed message each way,
// grpc-status in the trailers).
//
// Why not grpc-go and the generated stub: linking grpc-go (and the protobuf runtime it
// needs) adds about 5 MB of code and tables to the proxy, and all of it ends up
// resident; a proxy's memory target is 20 MB. The messages are encoded with
// protowire following the field numbers of identity.proto; the tests talk to a
// server built from the generated proxy/api code with grpc-go, which keeps the two
// in step.
const certifyPath = "/weft.identity.v1.Identity/Certify"

// Field numbers from proxy/api/identity.proto.
const (
	reqIdentityField = 1
	reqTokenField    = 2
	reqCSRField      = 3
	respLeafField    = 1
	respInterField   = 2
)

// certifyCall sends one Certify request and returns the leaf and intermediates (DER).
func certifyCall(ctx context.Context, addr string, tlsCfg *tls.Config, identity string, token, csr []byte) (leaf []byte, inters [][]byte, err error) {
	var msg []byte
	msg = protowire.AppendTag(msg, reqIdentityField, protowire.BytesType)
	msg = protowire.AppendString(msg, identity)
	msg = protowire.AppendTag(msg, reqTokenField, protowire.BytesType)
	msg = protowire.AppendBytes(msg, token)
	msg = protowire.AppendTag(msg, reqCSRField, protowire.BytesType)
	msg = protowire.AppendBytes(msg, csr)
	body := grpcwire.AppendFrame(nil, msg)

	tr := &http2.Transport{TLSClientConfig: tlsCfg}
	defer tr.CloseIdleConnections()
	u := url.URL{Scheme: "https", Host: addr, Path: certifyPath}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", "weft-proxy")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, nil, fmt.Errorf("identity service %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("identity service %s: HTTP status %d", addr, resp.StatusCode)
	}
	// Exactly one message, then the end of the body, after which the trailers are read.
	fr := grpcwire.NewReader(resp.Body, maxCertifyAnswer)
	data, rerr := fr.Next()
	if rerr == nil {
		if _, err := fr.Next(); !errors.Is(err, io.EOF) {
			rerr = errors.New("more than one message")
		}
	}
	// grpc-status is in the trailers, or in the headers of a trailers-only answer; a
	// refusal is reported as such even when the body was malformed too.
	st, ok := grpcwire.ResponseStatus(resp)
	if ok && st.Code != grpcwire.OK {
		return nil, nil, &refusedError{st}
	}
	if rerr != nil {
		return nil, nil, fmt.Errorf("malformed gRPC answer from the identity service: %w", rerr)
	}
	if !ok {
		return nil, nil, errors.New("identity service answer has no grpc-status")
	}
	return parseCertifyResponse(data)
}

func parseCertifyResponse(b []byte) (leaf []byte, inters [][]byte, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == respLeafField || num == respInterField) {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, nil, protowire.ParseError(m)
			}
			if num == respLeafField {
				leaf = bytes.Clone(v)
			} else {
				inters = append(inters, bytes.Clone(v))
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, nil, protowire.ParseError(m)
		}
		b = b[m:]
	}
	if len(leaf) == 0 {
		return nil, nil, errors.New("identity service answer has no leaf certificate")
	}
	return leaf, inters, nil
}

// maxCertifyAnswer bounds the identity service's answer: a leaf and a few
// intermediates take a few KiB.
const maxCertifyAnswer = 1 << 20

// refusedError is the identity service's refusal (a non-OK status); errors.As finds the
// *grpcwire.Status behind it.
type refusedError struct{ st *grpcwire.Status }

func (e *refusedError) Error() string {
	return fmt.Sprintf("identity service refused: %s: %s", e.st.Code, e.st.Message)
}

func (e *refusedError) Unwrap() error { return e.st }
