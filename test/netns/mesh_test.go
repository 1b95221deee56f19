package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	proxyUID    = 2102
	trustDomain = "weft.test"
	// clusterIP and clusterIP6 stand for Service addresses: nothing owns them, only
	// pod A's proxy configuration knows they mean pod B.
	clusterIP      = "10.199.2.10"
	clusterIP6     = "fd00:199:2::10"
	wrongClusterIP = "10.199.2.11"
)

var (
	idA = "spiffe://" + trustDomain + "/ns/default/sa/a"
	idB = "spiffe://" + trustDomain + "/ns/default/sa/b"
)

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pod is one namespace with weft-init applied and a weft-proxy running as the proxy UID.
type pod struct {
	ns       *NS
	proxyLog *syncBuffer
}

// startPod runs weft-init with initArgs in ns, then weft-proxy with the static
// configuration cfg and the identity files, as UID 2102, and waits for /ready.
func startPod(t *testing.T, ns *NS, dir, name, cfg string, id IdentityFiles, initArgs ...string) *pod {
	t.Helper()
	return startPodWith(t, ns, dir, name, cfg, id, nil, initArgs...)
}

// startPodWith is startPod with extra weft-proxy flags.
func startPodWith(t *testing.T, ns *NS, dir, name, cfg string, id IdentityFiles, proxyArgs []string, initArgs ...string) *pod {
	t.Helper()
	runInit(t, ns, initArgs...)
	proxy, err := bins.Get("./cmd/weft-proxy")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &pod{ns: ns, proxyLog: &syncBuffer{}}
	args := append([]string{"--config", cfgPath, "--log-level", "debug", "--shutdown-grace", "1s"}, id.Args()...)
	cmd := exec.Command(proxy, append(args, proxyArgs...)...)
	cmd.Stdout, cmd.Stderr = p.proxyLog, p.proxyLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: proxyUID, Gid: proxyUID}}
	if err := ns.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("weft-proxy in pod %s logged:\n%s", name, p.proxyLog.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		code, _, err := p.admin(ctx, "/ready")
		if err == nil && code == http.StatusOK {
			return p
		}
		select {
		case <-ctx.Done():
			t.Fatalf("weft-proxy in pod %s never became ready (last: %d %v); log:\n%s", name, code, err, p.proxyLog.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// admin GETs a path from the proxy's admin server over the namespace's loopback.
func (p *pod) admin(ctx context.Context, path string) (int, string, error) {
	c := http.Client{Transport: &http.Transport{DialContext: p.ns.DialContext}, Timeout: 2 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:4191"+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func secret(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "weftsecret" + hex.EncodeToString(b)
}

// curl runs Debian's curl inside ns as root (an app knowing nothing of the proxy) and
// returns the HTTP status and body.
func curl(t *testing.T, ns *NS, url, header string) (int, string) {
	t.Helper()
	out, err := ns.Exec(context.Background(), "curl", "-sS", "-g", "-m", "10", "-H", header,
		"-w", "\n%{http_code}", url)
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	var code int
	fmt.Sscanf(s[i+1:], "%d", &code)
	if err != nil && code == 0 {
		t.Logf("curl %s: %v", url, err)
	}
	return code, s[:max(i, 0)]
}

// TestMesh is the scenario of the proxy end to end: pod A's app calls pod B's
// service by a ClusterIP-like address with no knowledge of the proxy; both pods run
// weft-init and weft-proxy; the bytes between the pods are TLS; B's app sees the
// request. Skip ports, the proxy UID and policy are checked on the same pair.
func TestMesh(t *testing.T) {
	RequireRoot(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (apt-get install curl)")
	}
	dir, err := os.MkdirTemp("", "weft-mesh-")
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

	// B's apps: go-httpbin on 8080 (dual-stack) and "whoami" listeners that report the
	// source address they see.
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
	for _, port := range []string{"9091", "9092", "9093", "9094"} {
		l, err := b.Listen("tcp", ":"+port)
		if err != nil {
			t.Fatal(err)
		}
		serveName(t, l, "whoami-"+port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitTCP(ctx, "127.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}

	endpoint := func(addr string, port int, id string) string {
		return fmt.Sprintf("  - {address: %q, port: %d, identity: %q}\n", addr, port, id)
	}
	dest := func(name, addr, protocol, epAddr string, epPort int, id string) string {
		d := fmt.Sprintf("- name: %s\n  addresses: [%q]\n", name, addr)
		if protocol != "" {
			d += "  protocol: " + protocol + "\n"
		}
		return d + "  endpoints:\n" + endpoint(epAddr, epPort, id)
	}
	cfgA := "destinations:\n" +
		dest("web", clusterIP+":80", "", addrB, 8080, idB) +
		dest("web6", "["+clusterIP6+"]:80", "", addrB6, 8080, idB) +
		dest("impostor", wrongClusterIP+":80", "", addrB, 8080, "spiffe://"+trustDomain+"/ns/default/sa/not-b") +
		dest("whoami", addrB+":9091", "opaque", addrB, 9091, idB) +
		dest("whoami-skip", addrB+":9092", "opaque", addrB, 9092, idB) +
		dest("whoami-strict", addrB+":9094", "opaque", addrB, 9094, idB)
	// B knows the same Service: its endpoint is B itself, so B's app calling its own
	// ClusterIP goes out through B's outbound proxy and back in through B's inbound.
	cfgB := "inbound:\n  defaultPolicy: all-unauthenticated\n  portPolicies:\n  - {port: 9094, policy: all-authenticated}\n" +
		"destinations:\n" + dest("web", clusterIP+":80", "", addrB, 8080, idB)

	podB := startPod(t, b, dir, "b", cfgB, files[1], "--skip-inbound-ports", "4190,4191,9093")
	podA := startPod(t, a, dir, "a", cfgA, files[0], "--skip-outbound-ports", "9092")

	type result struct {
		answer string // what the app answered ("" on failure)
		code   int    // HTTP status, for curl cases
	}
	tests := []struct {
		name string
		// do sends a request carrying the secret and returns what came back.
		do func(t *testing.T, s string) result
		// wantCode is the HTTP status curl must see (0: not an HTTP case).
		wantCode int
		// wantFrom is the whoami answer prefix ("" to skip); wantNotFrom an address
		// the app must not see as source (it came through B's proxy).
		wantFrom, wantNotFrom string
		wantRefused           bool
		// wirePlain: the secret must cross the veth in plaintext (a bypass);
		// otherwise it must not, and TLS records must.
		wirePlain bool
		// appSees: B's httpbin must log the request path.
		appSees bool
		// local: the call stays inside pod B; nothing may cross the veth.
		local bool
		// newConn: the proxies open their first connection here, so the capture
		// holds both directions from the TLS handshake on.
		newConn bool
	}{
		{
			name: "app calls a ClusterIP over HTTP, proxies carry it over mTLS",
			do: func(t *testing.T, s string) result {
				code, body := curl(t, a, "http://"+clusterIP+"/anything/"+s, "X-Weft-Secret: "+s)
				return result{answer: body, code: code}
			},
			wantCode: 200, appSees: true, newConn: true,
		},
		{
			name: "same over IPv6",
			do: func(t *testing.T, s string) result {
				code, body := curl(t, a, "http://["+clusterIP6+"]/anything/"+s, "X-Weft-Secret: "+s)
				return result{answer: body, code: code}
			},
			wantCode: 200, appSees: true,
		},
		{
			name: "peer with the wrong identity is refused",
			do: func(t *testing.T, s string) result {
				code, body := curl(t, a, "http://"+wrongClusterIP+"/anything/"+s, "X-Weft-Secret: "+s)
				return result{answer: body, code: code}
			},
			wantRefused: true,
		},
		{
			name: "opaque TCP from the app is carried over mTLS",
			do: func(t *testing.T, s string) result {
				got, err := dialRoot(a, addrB+":9091", s)
				if err != nil {
					t.Logf("dial: %v", err)
				}
				return result{answer: got}
			},
			wantFrom: "whoami-9091", wantNotFrom: addrA,
		},
		{
			name: "proxy UID bypasses A's proxy: plaintext on the wire, B's inbound still takes it",
			do: func(t *testing.T, s string) result {
				got, err := dialAs(t, a, proxyUID, addrB+":9091", s)
				if err != nil {
					t.Logf("dial: %v", err)
				}
				return result{answer: got}
			},
			wantFrom: "whoami-9091", wantNotFrom: addrA, wirePlain: true,
		},
		{
			name: "skipped outbound port goes out in plaintext",
			do: func(t *testing.T, s string) result {
				got, err := dialRoot(a, addrB+":9092", s)
				if err != nil {
					t.Logf("dial: %v", err)
				}
				return result{answer: got}
			},
			wantFrom: "whoami-9092", wirePlain: true,
		},
		{
			name: "skipped inbound port reaches B's app directly",
			do: func(t *testing.T, s string) result {
				got, err := dialAs(t, a, proxyUID, addrB+":9093", s)
				if err != nil {
					t.Logf("dial: %v", err)
				}
				return result{answer: got}
			},
			wantFrom: "whoami-9093 from=" + addrA + ":", wirePlain: true,
		},
		{
			name: "port requiring identity refuses a client without a certificate",
			do: func(t *testing.T, s string) result {
				got, _ := dialAs(t, a, proxyUID, addrB+":9094", s)
				return result{answer: got}
			},
			wantRefused: true, wirePlain: true,
		},
		{
			name: "pod calls its own ClusterIP: out through its proxy, back in over mTLS",
			do: func(t *testing.T, s string) result {
				code, body := curl(t, b, "http://"+clusterIP+"/anything/"+s, "X-Weft-Secret: "+s)
				return result{answer: body, code: code}
			},
			wantCode: 200, appSees: true, local: true,
		},
		{
			name: "pod calls its own pod IP (via lo): redirected, passed through to the app",
			do: func(t *testing.T, s string) result {
				got, err := dialRoot(b, addrB+":9091", s)
				if err != nil {
					t.Logf("dial: %v", err)
				}
				return result{answer: got}
			},
			wantFrom: "whoami-9091", local: true,
		},
		{
			name: "port requiring identity accepts the meshed client",
			do: func(t *testing.T, s string) result {
				got, err := dialRoot(a, addrB+":9094", s)
				if err != nil {
					t.Logf("dial: %v", err)
				}
				return result{answer: got}
			},
			wantFrom: "whoami-9094", wantNotFrom: addrA,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := secret(t)
			capt, err := b.StartCapture("eth0")
			if err != nil {
				t.Fatal(err)
			}
			res := tt.do(t, s)
			// Let the last segments (FIN, close_notify) land before stopping.
			time.Sleep(200 * time.Millisecond)
			segs, err := capt.Stop()
			if err != nil {
				t.Fatal(err)
			}
			wire := Wire{Segments: segs}

			switch {
			case tt.wantRefused:
				if res.code == 200 || strings.Contains(res.answer, "whoami") || strings.Contains(res.answer, s) {
					t.Errorf("request went through (status %d): %q", res.code, res.answer)
				}
			case tt.wantCode != 0:
				if res.code != tt.wantCode || !strings.Contains(res.answer, "/anything/"+s) || !strings.Contains(res.answer, s) {
					t.Errorf("status %d, body %q; want %d echoing the request", res.code, res.answer, tt.wantCode)
				}
			default:
				if !strings.HasPrefix(res.answer, tt.wantFrom) || !strings.Contains(res.answer, "line="+s) {
					t.Errorf("app answered %q, want %q... with our line", res.answer, tt.wantFrom)
				}
				if tt.wantNotFrom != "" && strings.Contains(res.answer, "from="+tt.wantNotFrom+":") {
					t.Errorf("app saw the client's own address (%q): B's proxy was bypassed", res.answer)
				}
			}
			if tt.appSees && !strings.Contains(httpbinLog.String(), "/anything/"+s) {
				t.Errorf("B's httpbin did not log the request; its log:\n%s", httpbinLog.String())
			}
			if !tt.appSees && strings.Contains(httpbinLog.String(), s) {
				t.Errorf("B's httpbin saw a request it must not have")
			}

			if tt.local {
				if wire.PayloadBytes() != 0 {
					t.Errorf("%d bytes crossed the veth for a call inside pod B", wire.PayloadBytes())
				}
				return
			}
			if wire.PayloadBytes() == 0 {
				t.Fatalf("nothing crossed the veth (%d segments)", len(segs))
			}
			if tt.wirePlain {
				if !wire.Contains([]byte(s)) {
					t.Errorf("the secret did not cross the veth in plaintext: the bypass did not happen")
				}
				return
			}
			if wire.Contains([]byte(s)) {
				t.Errorf("the secret crossed the veth in plaintext")
			}
			tls := wire.Between(4143)
			if tls.TLSApplicationData()+tls.TLSHandshakes() == 0 {
				t.Errorf("no TLS record crossed the veth to or from port 4143 (%d segments, %d payload bytes)",
					len(tls.Segments), tls.PayloadBytes())
			}
			// Connections that start within this capture must be TLS from the first
			// byte to the last, in both directions.
			checked, err := wire.TLSFlows()
			if err != nil {
				t.Error(err)
			}
			if tt.newConn && checked < 2 {
				t.Errorf("checked %d TLS flows from their start, want both directions of the new connection", checked)
			}
		})
	}

	t.Run("proxies recorded the peers' identities", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, c := range []struct {
			p    *pod
			want string
		}{
			{podB, `client_id="` + idA + `"`},
			{podA, `server_id="` + idB + `"`},
			// The call to its own ClusterIP: B was client and server of itself.
			{podB, `client_id="` + idB + `"`},
			{podB, `server_id="` + idB + `"`},
		} {
			code, body, err := c.p.admin(ctx, "/metrics")
			if err != nil || code != 200 {
				t.Fatalf("metrics: %d %v", code, err)
			}
			if !strings.Contains(body, c.want) {
				t.Errorf("metrics of %s lack %s", c.p.ns.Name, c.want)
			}
		}
	})
}
