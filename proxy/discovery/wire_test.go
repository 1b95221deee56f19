package discovery

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// scriptedDest is a grpc-go destination service whose answer is chosen by the
// request's context_namespace, to check the hand-made client's reading of every way a
// gRPC server ends a call.
type scriptedDest struct {
	apigrpc.UnimplementedDestinationServer
}

func (scriptedDest) Get(req *api.GetDestination, stream apigrpc.Destination_GetServer) error {
	snap := &api.DestinationUpdate{Kind: &api.DestinationUpdate_Snapshot{Snapshot: &api.DestinationConfig{Version: "v1"}}}
	switch req.GetContextNamespace() {
	case "denied":
		// Before any message: a trailers-only answer.
		return status.Error(codes.PermissionDenied, "namespace ünmatched 100%")
	case "unavailable-after-one":
		if err := stream.Send(snap); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "shutting down")
	case "ok-after-one":
		return stream.Send(snap)
	case "large":
		big := &api.DestinationConfig{Version: strings.Repeat("x", 3<<20)}
		if err := stream.Send(&api.DestinationUpdate{Kind: &api.DestinationUpdate_Snapshot{Snapshot: big}}); err != nil {
			return err
		}
		return stream.Send(snap)
	}
	return status.Error(codes.InvalidArgument, "unknown script")
}

func TestWireStatuses(t *testing.T) {
	p := newPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool,
	})), grpc.MaxSendMsgSize(64<<20))
	apigrpc.RegisterDestinationServer(s, scriptedDest{})
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	opts := Options{Addr: ln.Addr().String(), ServerName: testServerName, Identity: p.store}
	tr := newTransport(opts)
	t.Cleanup(tr.CloseIdleConnections)

	cases := []struct {
		name     string
		script   string
		messages []int         // sizes of the versions of the snapshots expected, in order
		code     grpcwire.Code // the end: grpcwire.OK means io.EOF
		message  string
	}{
		{name: "trailers-only refusal", script: "denied", code: grpcwire.PermissionDenied, message: "namespace ünmatched 100%"},
		{name: "error after a message", script: "unavailable-after-one", messages: []int{2}, code: grpcwire.Unavailable, message: "shutting down"},
		{name: "clean end after a message", script: "ok-after-one", messages: []int{2}, code: grpcwire.OK},
		{name: "a large message then a small one", script: "large", messages: []int{3 << 20, 2}, code: grpcwire.OK},
		{name: "unknown request", script: "other", code: grpcwire.InvalidArgument, message: "unknown script"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := openGet(ctx, tr, opts.Addr, &api.GetDestination{ContextNamespace: tc.script,
				Target: &api.GetDestination_Authority{Authority: webAuthority}})
			var got []int
			if err == nil {
				defer st.Close()
				for {
					var u *api.DestinationUpdate
					if u, err = st.Recv(); err != nil {
						break
					}
					got = append(got, len(u.GetSnapshot().GetVersion()))
				}
			}
			if len(got) != len(tc.messages) {
				t.Fatalf("got messages %v, want %v", got, tc.messages)
			}
			for i := range got {
				if got[i] != tc.messages[i] {
					t.Fatalf("got messages %v, want %v", got, tc.messages)
				}
			}
			if tc.code == grpcwire.OK {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("end: %v, want io.EOF", err)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tc.code || se.Message != tc.message {
				t.Fatalf("end: %#v, want code %d message %q", err, tc.code, tc.message)
			}
		})
	}
}

// roundTripFunc answers a request with whatever the function returns.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTrailersOnlyOKIsNoStream: a trailers-only answer with grpc-status OK (0, or 00)
// ends the call before any message. openGet returned no stream and no error for it,
// and the caller then used the missing stream.
func TestTrailersOnlyOKIsNoStream(t *testing.T) {
	for _, code := range []string{"0", "00"} {
		rt := roundTripFunc(func(*http.Request) (*http.Response, error) {
			h := http.Header{}
			h.Set("Grpc-Status", code)
			return &http.Response{StatusCode: http.StatusOK, Header: h, Body: io.NopCloser(bytes.NewReader(nil))}, nil
		})
		s, err := openGet(context.Background(), rt, "127.0.0.1:1", &api.GetDestination{})
		var se *StatusError
		if s != nil || !errors.As(err, &se) {
			t.Errorf("grpc-status %q: stream %v, error %v; want no stream and a *StatusError", code, s, err)
		}
	}
}
