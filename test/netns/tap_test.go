package netns

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// TestTapInPods: pod B runs weft-init with its default rules and weft-proxy with a tap
// identity, as the injector configures them. From pod A, over the veth, a grpc-go
// client holding the tap identity reaches B's tap server on 4190 directly (weft-init
// skips the port; through the inbound proxy it would be refused as one of the proxy's
// own ports) and sees A's plaintext request to B's app, which the redirect sent
// through B's inbound proxy; a client with a workload's identity cannot tap.
func TestTapInPods(t *testing.T) {
	RequireRoot(t)
	dir, err := os.MkdirTemp("", "weft-tap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leafB, err := ca.Issue(idB, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	filesB, err := ca.WriteIdentity(dir, "b", leafB)
	if err != nil {
		t.Fatal(err)
	}
	tapID := meshdefaults.TapIdentity(trustDomain, "weft-system")

	a, b := twoPods(t)
	l, err := b.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app:"+r.URL.Path) })}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	// weft-init without flags: its default skips 4190-4191.
	podB := startPodWith(t, b, dir, "b", "inbound: {defaultPolicy: all-unauthenticated}\n", filesB, []string{"--tap-identity", tapID})

	client := func(id string) apigrpc.TapClient {
		leaf, err := ca.Issue(id, now.Add(-time.Minute), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		cfg := peertls.ClientConfig(peertls.ClientOptions{ServerName: idB, Roots: func() *x509.CertPool { return pool },
			Certificate: func() *tls.Certificate { return &cert }})
		cc, err := grpc.NewClient("passthrough:///"+addrB+":4190", grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return a.DialContext(ctx, "tcp", addr) }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return apigrpc.NewTapClient(cc)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := client(tapID).Observe(ctx, &api.ObserveRequest{Match: &api.TapMatch{Direction: api.TapDirection_TAP_DIRECTION_INBOUND}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *api.TapEvent, 16)
	go func() {
		for {
			ev, err := st.Recv()
			if err != nil {
				close(got)
				return
			}
			got <- ev
		}
	}()
	// The stream is open once the proxy counts it.
	hc := http.Client{Transport: &http.Transport{DialContext: a.DialContext}, Timeout: 10 * time.Second}
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, body, _ := podB.admin(ctx, "/metrics")
		if code == 200 && strings.Contains(body, "\nweft_tap_streams 1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap stream never registered:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := hc.Get("http://" + addrB + ":8080/through-the-redirect?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case ev, ok := <-got:
		if !ok {
			t.Fatal("tap stream ended")
		}
		ri := ev.GetRequestInit()
		if ri.GetPath() != "/through-the-redirect" || ri.GetTls() || !strings.HasPrefix(ev.GetSource().GetAddress(), addrA+":") ||
			ev.GetDestination().GetIdentity() != idB || ev.GetDestination().GetAddress() != addrB+":8080" {
			t.Fatalf("first event %v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no event")
	}

	// A workload's certificate, from the same trust roots, cannot tap.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	ws, err := client(idA).Observe(wctx, &api.ObserveRequest{})
	if err == nil {
		_, err = ws.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a workload's identity tapping: %v, want the handshake refused", err)
	}
}
