package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"golang.org/x/net/http2"
	"google.golang.org/protobuf/encoding/protowire"
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
	body := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg))) // body[0] = 0: not compressed
	body = append(body, msg...)

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
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read identity service answer: %w", err)
	}
	// grpc-status is in the trailers, or in the headers of a trailers-only answer.
	code, message := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if code == "" {
		code, message = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if code != "0" {
		if m, err := url.PathUnescape(message); err == nil {
			message = m
		}
		return nil, nil, &StatusError{Code: code, Message: message}
	}
	if len(data) < 5 || data[0] != 0 || int(binary.BigEndian.Uint32(data[1:5])) != len(data)-5 {
		return nil, nil, errors.New("malformed gRPC answer from the identity service")
	}
	return parseCertifyResponse(data[5:])
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

// StatusError is a gRPC error status returned by the identity service.
type StatusError struct {
	Code    string // numeric gRPC code
	Message string
}

var grpcCodes = map[string]string{"1": "Canceled", "2": "Unknown", "3": "InvalidArgument", "4": "DeadlineExceeded",
	"5": "NotFound", "7": "PermissionDenied", "8": "ResourceExhausted", "9": "FailedPrecondition", "13": "Internal",
	"14": "Unavailable", "16": "Unauthenticated"}

func (e *StatusError) Error() string {
	name := grpcCodes[e.Code]
	if name == "" {
		name = "code " + strconv.Quote(e.Code)
	}
	return fmt.Sprintf("identity service refused: %s: %s", name, e.Message)
}
