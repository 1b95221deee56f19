package cli_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"github.com/mccutchen/go-httpbin/v2/httpbin"

	"github.com/weftmesh/weft/internal/freeport"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// buildProxy compiles cmd/weft-proxy once per test binary run.
// WEFT_PROXY_BIN selects a prebuilt binary instead.
func buildProxy(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("WEFT_PROXY_BIN"); b != "" {
		return b
	}
	bin := filepath.Join(t.TempDir(), "weft-proxy")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/weftmesh/weft/cmd/weft-proxy")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

type proc struct {
	cmd            *exec.Cmd
	out, in, admin int
	stderr         *lockedBuffer
	exited         chan error
}

// lockedBuffer is the child's stderr: exec copies into it from a goroutine of its own
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (p *proc) adminURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.admin, path)
}

func startProc(t *testing.T, bin, dir, name, config string, certs [3]string) *proc {
	t.Helper()
	cfgPath := filepath.Join(dir, name+".yaml")
	os.WriteFile(cfgPath, []byte(config), 0o644)
	p := &proc{out: freePort(t), in: freePort(t), admin: freePort(t), stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "--config", cfgPath, "--listen-addr", "127.0.0.1", "--admin-addr", "127.0.0.1",
		"--outbound-port", strconv.Itoa(p.out), "--inbound-port", strconv.Itoa(p.in), "--admin-port", strconv.Itoa(p.admin),
		"--identity-cert", certs[0], "--identity-key", certs[1], "--identity-roots", certs[2],
		"--shutdown-grace", "2s", "--log-level", "info", "--unsafe-loopback-apps") // apps on 127.0.0.1
	p.cmd.Stderr = p.stderr
	if n := os.Getenv("WEFT_TEST_PROXY_GOMAXPROCS"); n != "" {
		p.cmd.Env = append(os.Environ(), "GOMAXPROCS="+n)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(p.adminURL("/ready"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// rssPeakKB reads VmHWM, the process's peak resident set size.
func rssPeakKB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return -1
}

// cpuSeconds reads utime+stime from /proc/<pid>/stat.
func cpuSeconds(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return float64(u+s) / 100
}

// waitStatus polls url until it answers want.
func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := get(t, "GET", url, "")
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", url, code, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBinaryPair runs two weft-proxy processes built from cmd/weft-proxy, with static
// configuration files and identity files, go-httpbin behind B, and fortio driving a
// constant rate through A. It checks the admin endpoints, SIGTERM and /shutdown.
func TestBinaryPair(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProxy(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "anchor")
	aDir, bDir := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.Mkdir(aDir, 0o755)
	os.Mkdir(bDir, 0o755)
	ac, ak, ar := testpki.Files(t, aDir, ca.IssueValid(t, "spiffe://weft.test/ns/a/sa/client"), ca.PEM)
	bc, bk, br := testpki.Files(t, bDir, ca.IssueValid(t, "spiffe://weft.test/ns/b/sa/server"), ca.PEM)

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	hs := &http.Server{Handler: httpbin.New().Handler()}
	go hs.Serve(ln)
	defer hs.Close()
	appPort := ln.Addr().(*net.TCPAddr).Port

	b := startProc(t, bin, dir, "b", "inbound: {defaultPolicy: all-authenticated}\n", [3]string{bc, bk, br})
	a := startProc(t, bin, dir, "a", fmt.Sprintf(`
outbound:
  originalDstOverride: 10.96.0.1:80
destinations:
- name: httpbin
  addresses: ["10.96.0.1:80"]
  endpoints:
  - address: 127.0.0.1
    port: %d
    identity: spiffe://weft.test/ns/b/sa/server
    proxyPort: %d
- name: b-admin
  authorities: ["b-admin.test"]
  endpoints:
  - address: 127.0.0.1
    port: %d
    identity: spiffe://weft.test/ns/b/sa/server
    proxyPort: %d
`, appPort, b.in, b.admin, b.in), [3]string{ac, ak, ar})

	cpuA0, cpuB0 := cpuSeconds(a.cmd.Process.Pid), cpuSeconds(b.cmd.Process.Pid)
	const qps, secs = 500, 2
	ro := periodic.RunnerOptions{QPS: qps, Duration: secs * time.Second, NumThreads: 16, Out: io.Discard}
	o := fhttp.HTTPRunnerOptions{RunnerOptions: ro}
	o.URL = fmt.Sprintf("http://127.0.0.1:%d/bytes/1024", a.out)
	res, err := fhttp.RunHTTPTest(&o)
	if err != nil {
		t.Fatal(err)
	}
	total := res.DurationHistogram.Count
	// Every request must succeed. The count only has to show a steady flow: on a
	// loaded 2-core machine fortio itself falls behind the rate (it managed two
	// thirds of it at load average 14), which says nothing about the proxies.
	if res.RetCodes[200] != total || total < qps*secs/4 {
		t.Fatalf("fortio: %d requests, codes %v", total, res.RetCodes)
	}
	cpuA, cpuB := cpuSeconds(a.cmd.Process.Pid)-cpuA0, cpuSeconds(b.cmd.Process.Pid)-cpuB0
	t.Logf("fortio %d req at %d qps through the pair: p50 %.3fms p99 %.3fms; CPU-s/1k req A %.3f B %.3f; peak RSS A %d KiB B %d KiB",
		total, qps, res.DurationHistogram.CalcPercentile(50)*1000, res.DurationHistogram.CalcPercentile(99)*1000,
		cpuA*1000/float64(total), cpuB*1000/float64(total), rssPeakKB(a.cmd.Process.Pid), rssPeakKB(b.cmd.Process.Pid))

	for _, p := range []*proc{a, b} {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "Rss") {
				t.Log(strings.Join(strings.Fields(l), " "))
			}
		}
	}
	t.Run("admin endpoints", func(t *testing.T) {
		if code, body := get(t, "GET", a.adminURL("/live"), ""); code != 200 || body != "live\n" {
			t.Fatalf("/live %d %q", code, body)
		}
		code, m := get(t, "GET", a.adminURL("/metrics"), "")
		// fortio sends one warm-up request per connection before the timed run.
		series := fmt.Sprintf(`request_total{direction="outbound",authority="127.0.0.1:%d",tls="true",server_id="spiffe://weft.test/ns/b/sa/server"} `, a.out)
		i := strings.Index(m, series)
		if code != 200 || i < 0 || !strings.Contains(m, "identity_cert_expiration_timestamp_seconds ") {
			t.Fatalf("/metrics missing %q:\n%s", series, m)
		}
		n, _ := strconv.ParseInt(strings.Fields(m[i+len(series):])[0], 10, 64)
		if n < total || n > total+int64(ro.NumThreads) {
			t.Fatalf("request_total %d, fortio sent %d (+%d warm-up)", n, total, ro.NumThreads)
		}
		_, mb := get(t, "GET", b.adminURL("/metrics"), "")
		if !strings.Contains(mb, `response_total{direction="inbound",authority="127.0.0.1:`+strconv.Itoa(a.out)+`",tls="true",client_id="spiffe://weft.test/ns/a/sa/client",status_code="200",classification="success"}`) {
			t.Fatalf("B /metrics lacks the inbound success series:\n%s", mb)
		}
		if code, body := get(t, "GET", a.adminURL("/proxy-log-level"), ""); code != 200 || body != "info\n" {
			t.Fatalf("log level %d %q", code, body)
		}
		if code, _ := get(t, "PUT", a.adminURL("/proxy-log-level"), "debug"); code != 204 {
			t.Fatalf("PUT log level: %d", code)
		}
		if code, body := get(t, "GET", a.adminURL("/proxy-log-level"), ""); code != 200 || body != "debug\n" {
			t.Fatalf("log level after PUT %d %q", code, body)
		}
		if code, _ := get(t, "PUT", a.adminURL("/proxy-log-level"), "loud"); code != 400 {
			t.Fatalf("bad level accepted: %d", code)
		}
		if code, _ := get(t, "GET", a.adminURL("/shutdown"), ""); code != 405 {
			t.Fatalf("GET /shutdown: %d, want 405", code)
		}
	})

	// The issue's attack through a real pair: A's configuration names B's admin
	// server as an endpoint, so A sends weft-dst 127.0.0.1:<B's admin port>. Even
	// with loopback apps allowed, B refuses its own port, and keeps serving.
	t.Run("relayed /shutdown is refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/shutdown", a.out), nil)
		req.Host = "b-admin.test"
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Weft-Proxy-Error") == "" {
			t.Fatalf("POST /shutdown relayed to B's admin: %d %q, want 403 from B's proxy", resp.StatusCode, body)
		}
		time.Sleep(200 * time.Millisecond)
		select {
		case err := <-b.exited:
			t.Fatalf("B exited: %v", err)
		default:
		}
		if code, _ := get(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/status/200", a.out), ""); code != 200 {
			t.Fatalf("the pair stopped serving: %d", code)
		}
	})

	t.Run("SIGHUP reloads the configuration", func(t *testing.T) {
		url := fmt.Sprintf("http://127.0.0.1:%d/status/200", a.out)
		// Point the service at a port where nothing listens: requests now fail...
		os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(fmt.Sprintf(`
outbound: {originalDstOverride: "10.96.0.1:80"}
destinations:
- addresses: ["10.96.0.1:80"]
  endpoints: [{address: 127.0.0.1, port: %d, identity: "spiffe://weft.test/ns/b/sa/server", proxyPort: %d}]
`, freePort(t), b.in)), 0o644)
		a.cmd.Process.Signal(syscall.SIGHUP)
		waitStatus(t, url, http.StatusBadGateway)
		// ...and a broken file is refused, keeping the running configuration.
		os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("destinations: [{addresses: [nope]}]"), 0o644)
		a.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(200 * time.Millisecond)
		if code, _ := get(t, "GET", url, ""); code != http.StatusBadGateway {
			t.Fatalf("after a broken reload: %d, want the previous configuration's 502", code)
		}
		if !strings.Contains(a.stderr.String(), "Reloading configuration failed") {
			t.Fatal("broken reload not logged")
		}
	})

	t.Run("SIGTERM drains and exits 0", func(t *testing.T) {
		b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-b.exited:
			if err != nil {
				t.Fatalf("exit: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("did not exit after SIGTERM")
		}
	})

	t.Run("POST /shutdown exits 0", func(t *testing.T) {
		if code, _ := get(t, "POST", a.adminURL("/shutdown"), ""); code != 200 {
			t.Fatalf("POST /shutdown: %d", code)
		}
		select {
		case err := <-a.exited:
			if err != nil {
				t.Fatalf("exit: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("did not exit after /shutdown")
		}
	})
}
