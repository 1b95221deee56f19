package cli_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// TestBinaryTap runs weft-proxy as the injector configures it (WEFT_TAP_IDENTITY in
// the environment, --tap-port) and taps it with grpc-go holding the tap identity: a
// request through the outbound listener arrives as events, /metrics shows the
// stream, and a proxy without a tap identity has no tap listener.
func TestBinaryTap(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProxy(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "anchor")
	const selfID = "spiffe://weft.test/ns/shop/sa/web"
	tapID := meshdefaults.TapIdentity("weft.test", "weft-system")
	cert, key, roots := testpki.Files(t, dir, ca.IssueValid(t, selfID), ca.PEM)

	app, _ := net.Listen("tcp", "127.0.0.1:0")
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
	go hs.Serve(app)
	defer hs.Close()
	cfg := filepath.Join(dir, "p.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("outbound: {originalDstOverride: %q}\n", app.Addr().String())), 0o644)

	start := func(tapIdentity string) (out, admin, tap int) {
		out, in, admin, tap := freePort(t), freePort(t), freePort(t), freePort(t)
		cmd := exec.Command(bin, "--config", cfg, "--listen-addr", "127.0.0.1", "--admin-addr", "127.0.0.1",
			"--outbound-port", strconv.Itoa(out), "--inbound-port", strconv.Itoa(in), "--admin-port", strconv.Itoa(admin),
			"--tap-port", strconv.Itoa(tap), "--identity-cert", cert, "--identity-key", key, "--identity-roots", roots)
		cmd.Env = append(os.Environ(), "WEFT_TAP_IDENTITY="+tapIdentity, "POD_NAME=web-0", "POD_NAMESPACE=shop")
		stderr := &lockedBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("stderr:\n%s", stderr.String())
			}
		})
		for deadline := time.Now().Add(10 * time.Second); ; {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", admin))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("not ready: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return out, admin, tap
	}

	out, admin, tapPort := start(tapID)
	leaf := ca.IssueValid(t, tapID)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tcfg := peertls.ClientConfig(peertls.ClientOptions{ServerName: selfID, Roots: func() *x509.CertPool { return pool },
		Certificate: func() *tls.Certificate { return &leaf.TLS }})
	cc, err := grpc.NewClient("passthrough:///127.0.0.1:"+strconv.Itoa(tapPort), grpc.WithTransportCredentials(credentials.NewTLS(tcfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := apigrpc.NewTapClient(cc).Observe(ctx, &api.ObserveRequest{Match: &api.TapMatch{PathPrefix: "/tapped"}})
	if err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, body := get(t, "GET", metrics, "")
		if strings.Contains(body, "\nweft_tap_streams 1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed the stream:\n%s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/tapped?q=1", out), ""); code != 200 || body != "hello" {
		t.Fatalf("through the proxy: %d %q", code, body)
	}
	ev, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	ri := ev.GetRequestInit()
	if ri.GetPath() != "/tapped" || ev.GetDirection() != api.TapDirection_TAP_DIRECTION_OUTBOUND || ev.GetSource().GetIdentity() != selfID {
		t.Fatalf("first event %v", ev)
	}
	var podLabel string
	for _, l := range ev.GetSource().GetLabels() {
		if l.GetName() == "pod" {
			podLabel = l.GetValue()
		}
	}
	if podLabel != "web-0" {
		t.Fatalf("source labels %v, want pod web-0 from POD_NAME", ev.GetSource().GetLabels())
	}

	// Without a tap identity nothing listens on the tap port.
	_, _, noTap := start("")
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(noTap), time.Second); err == nil {
		c.Close()
		t.Fatal("a proxy without WEFT_TAP_IDENTITY listens on its tap port")
	}
}
