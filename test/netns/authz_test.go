package netns

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestInboundPolicyInPods: pod B runs weft-init and the real weft-proxy binary with a
// bootstrap inbound policy, as the injector configures it (default deny, the pod's
// probe path, the cluster's networks, per-port policies), and pod A calls it over the
// real network, redirected by B's iptables rules:
//   - 8080 (deny): the probe path passes in plaintext, anything else is 403;
//   - 9090 (cluster-unauthenticated): A's IPv4 address is in the cluster networks and
//     passes; its IPv6 address is not and is 403;
//   - 9091 (cluster-authenticated): plaintext and a peer without a certificate are 403,
//     a meshed peer with A's certificate passes.
//
// The decisions are counted in B's inbound_http_authz_* series with the identity.
func TestInboundPolicyInPods(t *testing.T) {
	RequireRoot(t)
	dir, err := os.MkdirTemp("", "weft-authz-")
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
	leafA, err := ca.Issue(idA, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	certA, err := tls.X509KeyPair(leafA.CertPEM, leafA.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}

	a, b := twoPods(t)
	for _, addr := range []string{":8080", ":9090", ":9091"} {
		l, err := b.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app:"+r.URL.Path) })}
		go hs.Serve(l)
		t.Cleanup(func() { hs.Close() })
	}
	cfg := `inbound:
  defaultPolicy: deny
  clusterNetworks: ["10.199.1.0/24"]
  probePaths: [{port: 8080, path: /healthz}]
  portPolicies:
  - {port: 9090, policy: cluster-unauthenticated}
  - {port: 9091, policy: cluster-authenticated}
`
	podB := startPod(t, b, dir, "b", cfg, filesB, "--skip-inbound-ports", "4190,4191")

	plain := func(url string) int {
		t.Helper()
		c := http.Client{Transport: &http.Transport{DialContext: a.DialContext}, Timeout: 10 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		url  string
		want int
	}{
		{"http://" + addrB + ":8080/healthz", 200},
		{"http://" + addrB + ":8080/other", 403},
		{"http://" + addrB + ":9090/x", 200},
		{"http://[" + addrB6 + "]:9090/x", 403},
		{"http://" + addrB + ":9091/x", 403},
	} {
		if got := plain(tc.url); got != tc.want {
			t.Errorf("plaintext %s: %d, want %d", tc.url, got, tc.want)
		}
	}
	meshed := meshPeer{from: a, to: addrB + ":4143", cert: &certA}
	if code, _, body := meshed.request(t, "weft.h2", "/x", addrB+":9091"); code != 200 || body != "app:/x" {
		t.Errorf("meshed peer to cluster-authenticated: %d %q", code, body)
	}
	noCert := meshPeer{from: a, to: addrB + ":4143"}
	if code, perr, _ := noCert.request(t, "weft.h2", "/x", addrB+":9091"); code != 403 || perr != "unauthorized" {
		t.Errorf("peer without a certificate to cluster-authenticated: %d %q, want 403 unauthorized", code, perr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, m, err := podB.admin(ctx, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`inbound_http_authz_allow_total{target_addr="` + addrB + `:8080",srv_group="",srv_kind="default",srv_name="deny",route_group="",route_kind="default",route_name="default",authz_group="",authz_kind="default",authz_name="probe",tls="no_identity",no_tls_reason="no_tls_from_remote"} 1`,
		`inbound_http_authz_deny_total{target_addr="` + addrB + `:8080",srv_group="",srv_kind="default",srv_name="deny",route_group="",route_kind="default",route_name="default",tls="no_identity",no_tls_reason="no_tls_from_remote"} 1`,
		`authz_name="cluster-authenticated",tls="true",client_id="` + idA + `"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("B's metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("B's metrics:\n%s", m)
	}
}
