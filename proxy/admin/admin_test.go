package admin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/proxy/metrics"
)

type level struct{ v string }

func (l *level) String() string { return l.v }
func (l *level) Set(s string) error {
	if s != "debug" && s != "info" {
		return errors.New("bad level")
	}
	l.v = s
	return nil
}

// curl calls the admin server from another process, as a container of the pod or
// `kubectl exec` would, and returns the status and body.
func curl(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "-g", "-m", "5", "-X", method, "--data-binary", body, "-w", "\n%{http_code}", url).Output()
	if err != nil {
		t.Fatalf("curl %s %s: %v", method, url, err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	code, _ := strconv.Atoi(s[i+1:])
	return code, s[:i]
}

func TestAdmin(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (apt-get install curl)")
	}
	ready := false
	var shutdowns atomic.Int32
	lv := &level{"info"}
	a := &Admin{Metrics: metrics.New(), Ready: func() bool { return ready }, Shutdown: func() { shutdowns.Add(1) }, Level: lv, Log: logr.Discard()}
	h := a.Handler()
	srv4 := httptest.NewServer(h)
	defer srv4.Close()
	ln6, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	srv6 := httptest.NewUnstartedServer(h)
	srv6.Listener.Close()
	srv6.Listener = ln6
	srv6.Start()
	defer srv6.Close()
	tests := []struct {
		name   string
		method string
		path   string
		// remote is the client address of a request handed to the handler
		// directly; "curl" and "curl6" call the real server from another process
		// over IPv4 and IPv6 loopback.
		remote     string
		body       string
		setup      func()
		wantStatus int
		wantBody   string
	}{
		{"not ready without certificate", "GET", "/ready", "10.1.2.3:5000", "", nil, 503, "not ready"},
		{"ready from anywhere", "GET", "/ready", "10.1.2.3:5000", "", func() { ready = true }, 200, "ready"},
		{"live", "GET", "/live", "10.1.2.3:5000", "", nil, 200, "live"},
		{"metrics", "GET", "/metrics", "10.1.2.3:5000", "", nil, 200, "weft_detect_timeout_total"},
		{"shutdown refused from network", "POST", "/shutdown", "10.1.2.3:5000", "", nil, 403, "loopback"},
		{"shutdown refused from loopback without a socket to check", "POST", "/shutdown", "127.0.0.1:5000", "", nil, 403, "cannot verify"},
		{"shutdown needs POST", "GET", "/shutdown", "curl", "", nil, 405, ""},
		{"shutdown from loopback", "POST", "/shutdown", "curl", "", nil, 200, "shutdown"},
		{"shutdown from ipv6 loopback", "POST", "/shutdown", "curl6", "", nil, 200, "shutdown"},
		{"log level refused from network", "PUT", "/proxy-log-level", "10.1.2.3:5000", "debug", nil, 403, ""},
		{"log level get", "GET", "/proxy-log-level", "curl", "", nil, 200, "info"},
		{"log level set", "PUT", "/proxy-log-level", "curl", "debug\n", nil, 204, ""},
		{"log level reads back", "GET", "/proxy-log-level", "curl6", "", nil, 200, "debug"},
		{"log level rejects junk", "PUT", "/proxy-log-level", "curl", "loud", nil, 400, "bad level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			var code int
			var body string
			switch tt.remote {
			case "curl":
				code, body = curl(t, tt.method, srv4.URL+tt.path, tt.body)
			case "curl6":
				code, body = curl(t, tt.method, srv6.URL+tt.path, tt.body)
			default:
				req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
				req.RemoteAddr = tt.remote
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				code, body = rec.Code, rec.Body.String()
			}
			if code != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("%s %s from %s: %d %q, want %d containing %q", tt.method, tt.path, tt.remote, code, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	if n := shutdowns.Load(); n != 2 {
		t.Fatalf("shutdown called %d times, want 2", n)
	}
}

// TestAdminRefusesItsOwnProcess: a client socket held by the admin server's own
// process is what every relay of the proxy is (the inbound side forwarding a peer's
// weft-dst, the outbound side forwarding for the app). Its writes are refused; the
// same request from another process on loopback goes through.
func TestAdminRefusesItsOwnProcess(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (apt-get install curl)")
	}
	var shutdowns atomic.Int32
	lv := &level{"info"}
	a := &Admin{Shutdown: func() { shutdowns.Add(1) }, Level: lv, Log: logr.Discard()}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/shutdown", ""},
		{"PUT", "/proxy-log-level", "debug"},
		{"GET", "/proxy-log-level", ""},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s from the admin's own process: %d, want 403", c.method, c.path, resp.StatusCode)
		}
	}
	if shutdowns.Load() != 0 || lv.v != "info" {
		t.Fatalf("state changed through the own process: %d shutdowns, level %q", shutdowns.Load(), lv.v)
	}
	if code, _ := curl(t, "POST", srv.URL+"/shutdown", ""); code != 200 || shutdowns.Load() != 1 {
		t.Fatalf("POST /shutdown from another process: %d, %d shutdowns; want 200 and 1", code, shutdowns.Load())
	}
}

func TestParseProcAddr(t *testing.T) {
	tests := []struct {
		name, in string
		want     string
		wantErr  bool
	}{
		{name: "ipv4 loopback", in: le32("7F000001") + ":1F90", want: "127.0.0.1:8080"},
		{name: "ipv6 loopback", in: le32("00000000") + le32("00000000") + le32("00000000") + le32("00000001") + ":0050", want: "[::1]:80"},
		{name: "ipv4-mapped is unmapped", in: le32("00000000") + le32("00000000") + le32("0000FFFF") + le32("7F000001") + ":0050", want: "127.0.0.1:80"},
		{name: "no port", in: "0100007F", wantErr: true},
		{name: "odd length", in: "0100007:0050", wantErr: true},
		{name: "bad port", in: "0100007F:XYZW", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcAddr(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if err == nil && got.String() != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// le32 writes 8 hexadecimal digits of a big-endian word the way the kernel prints a
// 32-bit word of a network address on this machine.
func le32(be string) string {
	b := make([]byte, 4)
	for i := range 4 {
		v, _ := strconv.ParseUint(be[2*i:2*i+2], 16, 8)
		b[i] = byte(v)
	}
	return fmt.Sprintf("%08X", binary.NativeEndian.Uint32(b))
}

func TestHeldBySelfFindsBothEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client := netip.MustParseAddrPort(c.LocalAddr().String())
	server := netip.MustParseAddrPort(ln.Addr().String())
	if self, err := heldBySelf(client, server); err != nil || !self {
		t.Fatalf("open socket of this process: self=%v err=%v, want true", self, err)
	}
	c.Close()
	if self, err := heldBySelf(client, server); err == nil || self {
		t.Fatalf("closed socket: self=%v err=%v, want an error (fail closed)", self, err)
	}
}
