package cli_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// identityServer is a stand-in identity service built from the generated proxy/api
// code with grpc-go.
type identityServer struct {
	apigrpc.UnimplementedIdentityServer
	ca    *testpki.CA
	token string
}

func (s *identityServer) Certify(ctx context.Context, req *api.CertifyRequest) (*api.CertifyResponse, error) {
	if string(req.GetToken()) != s.token {
		return nil, status.Error(codes.Unauthenticated, "token refused")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCertificateSigningRequest())
	if err != nil || len(csr.URIs) != 1 || csr.URIs[0].String() != req.GetIdentity() {
		return nil, status.Error(codes.PermissionDenied, "CSR does not match the identity")
	}
	der, err := s.ca.SignCSR(csr, time.Hour)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &api.CertifyResponse{LeafCertificate: der}, nil
}

// TestBinaryMeshIdentity runs weft-proxy --identity-mode=mesh, configured through the
// environment the pod injector sets, against an identity service: /ready follows
// whether the proxy holds a certificate.
func TestBinaryMeshIdentity(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProxy(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "anchor")
	roots := filepath.Join(dir, "ca.crt")
	os.WriteFile(roots, ca.PEM, 0o644)
	tokenPath := filepath.Join(dir, "token")
	os.WriteFile(tokenPath, []byte("sa-token"), 0o600)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCert := ca.IssueDNS(t, "localhost").TLS
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{srvCert}})))
	apigrpc.RegisterIdentityServer(gs, &identityServer{ca: ca, token: "sa-token"})
	go gs.Serve(ln)
	defer gs.Stop()
	port := ln.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name      string
		token     string
		wantReady bool
	}{
		{"accepted token makes the proxy ready", "sa-token", true},
		{"refused token keeps it not ready", "stolen", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := filepath.Join(t.TempDir(), "token")
			os.WriteFile(tp, []byte(tt.token), 0o600)
			admin := freePort(t)
			cmd := exec.Command(bin, "--identity-mode=mesh", "--identity-roots="+roots,
				"--listen-addr=127.0.0.1", "--admin-addr=127.0.0.1",
				"--outbound-port="+strconv.Itoa(freePort(t)), "--inbound-port="+strconv.Itoa(freePort(t)), "--admin-port="+strconv.Itoa(admin))
			cmd.Env = append(os.Environ(),
				"WEFT_IDENTITY_ADDR=localhost:"+strconv.Itoa(port),
				"WEFT_IDENTITY_LOCAL_NAME=spiffe://weft.test/ns/web/sa/frontend",
				"WEFT_IDENTITY_TOKEN_FILE="+tp,
				"WEFT_DEFAULT_INBOUND_POLICY=all-authenticated",
			)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Kill()
				cmd.Wait()
				if t.Failed() {
					t.Logf("proxy log:\n%s", stderr.String())
				}
			}()
			p := &proc{admin: admin}
			deadline := time.Now().Add(5 * time.Second)
			ready := false
			for time.Now().Before(deadline) && !ready {
				if resp, err := httpGet(p.adminURL("/ready")); err == nil {
					ready = resp == 200
				}
				time.Sleep(50 * time.Millisecond)
			}
			if ready != tt.wantReady {
				t.Fatalf("ready = %v, want %v", ready, tt.wantReady)
			}
			if !tt.wantReady {
				return
			}
			_, m := get(t, "GET", p.adminURL("/metrics"), "")
			i := strings.Index(m, "\nidentity_cert_expiration_timestamp_seconds ")
			if i < 0 {
				t.Fatalf("no expiry metric:\n%s", m)
			}
			exp, _ := strconv.ParseInt(strings.Fields(m[i:])[1], 10, 64)
			if until := time.Until(time.Unix(exp, 0)); until < 50*time.Minute || until > time.Hour {
				t.Fatalf("certificate expires in %s, want about an hour", until)
			}
		})
	}
}

func httpGet(url string) (int, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
