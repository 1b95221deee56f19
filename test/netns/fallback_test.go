package netns

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestNoPlaintextWhenDiscoveryIsDown: pod A's proxy has a destination service that
// does not answer (control plane down) and no static destinations, so nothing tells
// it that pod B is meshed. A's app calls B's app by pod IP (IPv4 and IPv6); the
// capture on the veth shows no plaintext HTTP between the pods, only TLS to B's
// inbound port: A's proxy found B's proxy by probing it and used mTLS.
func TestNoPlaintextWhenDiscoveryIsDown(t *testing.T) {
	RequireRoot(t)
	dir, err := os.MkdirTemp("", "weft-fallback-")
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
	var files [2]IdentityFiles
	for i, id := range []string{idA, idB} {
		leaf, err := ca.Issue(id, now.Add(-time.Minute), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if files[i], err = ca.WriteIdentity(dir, string(rune('a'+i)), leaf); err != nil {
			t.Fatal(err)
		}
	}
	a, b := twoPods(t)
	httpbin, err := bins.Get("github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin")
	if err != nil {
		t.Fatal(err)
	}
	httpbinLog := &syncBuffer{}
	hb := exec.Command(httpbin, "-host", "::", "-port", "8080")
	hb.Stdout, hb.Stderr = httpbinLog, httpbinLog
	if err := b.Start(hb); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitTCP(ctx, "127.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}

	startPod(t, b, dir, "b", "inbound:\n  defaultPolicy: all-unauthenticated\n", files[1])
	// 127.0.0.1:1 refuses at once: the destination service is down. The namespace for
	// its requests comes from --identity-name.
	podA := startPodWith(t, a, dir, "a", "{}\n", files[0], []string{
		"--destination-addr", "127.0.0.1:1", "--identity-name", idA,
		"--cluster-networks", "10.199.0.0/16,fd00:199::/64", "--mesh-tls-mode", "Strict"})

	for _, target := range []string{addrB, "[" + addrB6 + "]"} {
		t.Run(target, func(t *testing.T) {
			s := secret(t)
			capt, err := b.StartCapture("eth0")
			if err != nil {
				t.Fatal(err)
			}
			code, body := curl(t, a, "http://"+target+":8080/anything/"+s, "X-Weft-Secret: "+s)
			time.Sleep(200 * time.Millisecond)
			segs, err := capt.Stop()
			if err != nil {
				t.Fatal(err)
			}
			if code != 200 || !strings.Contains(body, "/anything/"+s) {
				t.Fatalf("status %d body %q, want 200 from B's httpbin", code, body)
			}
			wire := Wire{Segments: segs}
			if wire.Contains([]byte(s)) || wire.Contains([]byte("GET /anything")) {
				t.Fatal("plaintext HTTP crossed the veth while the destination service was down")
			}
			if tls := wire.Between(4143); tls.TLSApplicationData() == 0 {
				t.Errorf("no TLS application data to or from port 4143 (%d segments)", len(tls.Segments))
			}
			if checked, err := wire.TLSFlows(); err != nil || checked < 2 {
				t.Errorf("TLS flows checked from their start: %d, %v; want the new connection's two directions", checked, err)
			}
			if !strings.Contains(httpbinLog.String(), "/anything/"+s) {
				t.Errorf("B's httpbin did not log the request")
			}
		})
	}
	_, m, err := podA.admin(context.Background(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`weft_outbound_mesh_probe_total{result="meshed"} 2`, `server_id="` + idB + `"`} {
		if !strings.Contains(m, want) {
			t.Errorf("A's metrics lack %s:\n%s", want, m)
		}
	}
	if strings.Contains(m, `no_tls_reason="discovery_unavailable"`) {
		t.Errorf("A counted plaintext connections with discovery unavailable:\n%s", m)
	}
}
