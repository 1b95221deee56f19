package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// weftTapSetup is the Weft pair with a tap server on each side and one tap stream
// open on the client side for the whole run, as `weft tap` holds one: every request
// is offered to it, and it takes what max_events_per_second (1,000, the cap) allows,
// about 333 requests a second at three events each. Compared with the weft setup at
// the same rate, it gives the CPU an open tap costs per request. The driver reads
// the events; its CPU is not counted, as the control plane's would not be.
func weftTapSetup(ctx context.Context, dir, bin, profileDir string, threads int, p *pki) (*setup, error) {
	tapID := meshdefaults.TapIdentity(trustDomain, "weft-system")
	s, err := weftSetup(ctx, dir, bin, "weft-tap", weftTapBase, "", profileDir, threads, p, "--tap-identity", tapID)
	if err != nil {
		return nil, err
	}
	cancel, err := openTap(ctx, fmt.Sprintf("127.0.0.1:%d", weftTapBase+190), p, tapID)
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("open the tap stream: %w", err)
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", weftTapBase+191)
	s.closers = append(s.closers, func() {
		// What the tap carried over the whole run: a tap that sent nothing would
		// make the comparison meaningless.
		if resp, err := http.Get(metrics); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "weft_tap_events_") {
					fmt.Println("weft-tap client side:", l)
				}
			}
		}
		cancel()
	})
	// The stream counts once the proxy registered it.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := waitMetric(wctx, metrics, "weft_tap_streams 1"); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// openTap dials the client side's tap server as the control plane does (grpc-go,
// mTLS with a certificate of the tap identity, the proxy held to its SPIFFE ID) and
// drains one Observe stream until the returned cancel.
func openTap(ctx context.Context, addr string, p *pki, tapID string) (func(), error) {
	now := time.Now()
	leaf, err := p.ca.Issue(tapID, now.Add(-time.Minute), now.Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.Cert)
	cfg := peertls.ClientConfig(peertls.ClientOptions{
		ServerName:  p.clientID,
		Roots:       func() *x509.CertPool { return roots },
		Certificate: func() *tls.Certificate { return &cert },
	})
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	st, err := apigrpc.NewTapClient(cc).Observe(sctx, &api.ObserveRequest{MaxEventsPerSecond: 1000})
	if err != nil {
		cancel()
		cc.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := st.Recv(); err != nil {
				return
			}
		}
	}()
	return func() { cancel(); <-done; cc.Close() }, nil
}

// waitMetric waits until url's text has line.
func waitMetric(ctx context.Context, url, line string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "\n"+line+"\n") {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never showed %q", url, line)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
