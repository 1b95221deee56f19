package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/grpcwire"
)

// certifyServer answers Certify calls over real HTTP/2 with TLS, with whatever answer
// writes, and returns the address and a client TLS config that trusts it.
func certifyServer(t *testing.T, answer func(w http.ResponseWriter)) (string, *tls.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != certifyPath || r.Header.Get("Content-Type") != "application/grpc" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		answer(w)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv.Listener.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}}
}

// TestCertifyStatus: the call's status is read with grpcwire's rules. "00" in the
// trailers is OK (this client took it for a refusal); a trailers-only refusal is
// reported with its code and decoded message; a trailers-only OK carries no
// certificate and is an error, not an empty success.
func TestCertifyStatus(t *testing.T) {
	answer := grpcwire.AppendFrame(nil, certifyResponse([]byte("leaf-der"), []byte("inter")))
	cases := []struct {
		name    string
		write   func(w http.ResponseWriter)
		wantErr string
		code    grpcwire.Code
	}{
		{name: "OK written 00", write: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Trailer", "Grpc-Status")
			w.WriteHeader(http.StatusOK)
			w.Write(answer)
			w.Header().Set("Grpc-Status", "00")
		}},
		{name: "trailers-only refusal", write: func(w http.ResponseWriter) {
			grpcwire.SetTrailersOnly(w.Header(), grpcwire.Unauthenticated, "token refused: 100% wrong")
			w.WriteHeader(http.StatusOK)
		}, wantErr: "identity service refused: Unauthenticated: token refused: 100% wrong", code: grpcwire.Unauthenticated},
		{name: "trailers-only OK", write: func(w http.ResponseWriter) {
			grpcwire.SetTrailersOnly(w.Header(), grpcwire.OK, "")
			w.WriteHeader(http.StatusOK)
		}, wantErr: "malformed gRPC answer"},
		{name: "two messages", write: func(w http.ResponseWriter) {
			w.Header().Set("Trailer", "Grpc-Status")
			w.WriteHeader(http.StatusOK)
			w.Write(append(append([]byte{}, answer...), answer...))
			w.Header().Set("Grpc-Status", "0")
		}, wantErr: "more than one message"},
		{name: "no status", write: func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusOK)
			w.Write(answer)
		}, wantErr: "no grpc-status"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, cfg := certifyServer(t, tc.write)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			leaf, inters, err := certifyCall(ctx, addr, cfg, "spiffe://td/ns/a/sa/b", []byte("token"), []byte("csr"))
			if tc.wantErr == "" {
				if err != nil || string(leaf) != "leaf-der" || len(inters) != 1 {
					t.Fatalf("got %q %q %v", leaf, inters, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if tc.code != grpcwire.OK {
				var st *grpcwire.Status
				if !errors.As(err, &st) || st.Code != tc.code {
					t.Fatalf("error %v carries no status %v", err, tc.code)
				}
			}
		})
	}
}
