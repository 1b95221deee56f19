/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package tap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// Credentials are what the fan-out proves and checks: the tap client certificate, the
// trust roots the proxies' certificates chain to, and the trust domain their identities
// are in. Each is read per tap, so renewals and rotations apply to the next one.
type Credentials interface {
	TapClientCertificate(ctx context.Context) (*tls.Certificate, error)
	TrustRoots(ctx context.Context) (*x509.CertPool, error)
	TrustDomain(ctx context.Context) (string, error)
}

// Fanout opens one Observe stream per pod and merges them.
type Fanout struct {
	Credentials Credentials
	// ConnectTimeout bounds the TCP connection and TLS handshake to one proxy.
	// Default: 5s.
	ConnectTimeout time.Duration
	// KeepaliveTime is how long a stream may be silent before the connection is
	// pinged; a proxy that vanished without a reset (node gone) is dropped after
	// KeepaliveTime + 10s. Default: 30s.
	KeepaliveTime time.Duration
	Log           logr.Logger
}

// PartEnd says how one pod's stream ended.
type PartEnd struct {
	Pod Pod
	Err error // nil when the proxy ended it, or the tap was cancelled
}

// Start streams every pod's events matching req into out until ctx is done or every
// stream has ended, setting TapEvent.proxy to the pod. It reads the credentials first
// and fails without starting anything when it cannot; then it returns wait, which
// returns once every part has ended. ends receives one PartEnd per pod (it may be
// nil). A stream that fails (proxy gone, refused, unreachable) ends only its own part.
// out is never closed.
func (f *Fanout) Start(ctx context.Context, pods []Pod, req *api.ObserveRequest, out chan<- *api.TapEvent, ends chan<- PartEnd) (wait func(), err error) {
	cert, err := f.Credentials.TapClientCertificate(ctx)
	if err != nil {
		return nil, fmt.Errorf("the tap client certificate: %w", err)
	}
	roots, err := f.Credentials.TrustRoots(ctx)
	if err != nil {
		return nil, err
	}
	td, err := f.Credentials.TrustDomain(ctx)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Go(func() {
			err := f.observe(ctx, p, td, cert, roots, req, out)
			if ctx.Err() != nil {
				err = nil
			}
			if err != nil {
				f.Log.V(1).Info("A tap stream ended with an error", "pod", p.Namespace+"/"+p.Name, "error", err.Error())
			}
			if ends != nil {
				select {
				case ends <- PartEnd{Pod: p, Err: err}:
				case <-ctx.Done():
				}
			}
		})
	}
	return wg.Wait, nil
}

func (f *Fanout) observe(ctx context.Context, p Pod, trustDomain string, cert *tls.Certificate, roots *x509.CertPool, req *api.ObserveRequest, out chan<- *api.TapEvent) error {
	connectTimeout := f.ConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = 5 * time.Second
	}
	ka := f.KeepaliveTime
	if ka <= 0 {
		ka = 30 * time.Second
	}
	tlsCfg := peertls.ClientConfig(peertls.ClientOptions{
		ServerName:  peertls.WorkloadID(trustDomain, p.Namespace, p.ServiceAccount),
		Roots:       func() *x509.CertPool { return roots },
		Certificate: func() *tls.Certificate { return cert },
	})
	dialer := &net.Dialer{Timeout: connectTimeout}
	conn, err := grpc.NewClient("passthrough:///"+p.Addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}),
		// One attempt: a proxy that cannot be reached within the timeout ends its
		// part rather than being retried for the length of the tap.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: connectTimeout}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ka, Timeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<10)),
	)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The stream is created under a deadline: creating it waits for the connection
	// (TCP and the TLS handshake). Once it is open it runs until ctx ends; a proxy
	// that sends no event holds its part open, which is a tap with nothing matching.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.AfterFunc(connectTimeout+time.Second, cancel)
	stream, err := apigrpc.NewTapClient(conn).Observe(sctx, req)
	if !timer.Stop() && ctx.Err() == nil {
		return errors.New("connecting to the proxy's tap server timed out")
	}
	if err != nil {
		return err
	}
	ref := &api.TapProxyRef{Namespace: p.Namespace, Pod: p.Name}
	for {
		ev, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case status.Code(err) == codes.Canceled && ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		}
		ev.Proxy = ref
		select {
		case out <- ev:
		case <-ctx.Done():
			return nil
		}
	}
}
