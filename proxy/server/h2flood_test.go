package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/server"
)

// procKB reads a "Name:  123 kB" line of /proc/<pid>/status.
func procKB(t testing.TB, pid int, name string) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}

// The issue's "must show": a peer that ignores flow control sends 256 MiB on one
// stream to a slow app through the real weft-proxy binary. It gets
// RST_STREAM(FLOW_CONTROL_ERROR), and the proxy's peak resident memory (VmHWM)
// stays under 64 MB. Before, the proxy buffered it all (12 MB to about 1 GB).
// WEFT_PROXY_BIN runs a given binary instead of building one.
func TestWeftH2FloodRealProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs weft-proxy")
	}
	dir := t.TempDir()
	bin := os.Getenv("WEFT_PROXY_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "weft-proxy")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/weftmesh/weft/cmd/weft-proxy").CombinedOutput()
		if err != nil {
			t.Fatalf("go build weft-proxy: %v\n%s", err, out)
		}
	}
	ca := testpki.NewCA(t, "weft test anchor")
	serverID, clientID := spiffe("b", serverSA), spiffe("a", clientSA)
	cert, key, roots := testpki.Files(t, dir, ca.IssueValid(t, serverID), ca.PEM)
	ports := make([]int, 3)
	for i := range ports {
		ln := listen(t)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	cmd := exec.Command(bin, "--identity-mode=files", "--identity-cert="+cert, "--identity-key="+key, "--identity-roots="+roots,
		"--listen-addr=127.0.0.1", "--admin-addr=127.0.0.1", "--log-level=error",
		"--outbound-port="+strconv.Itoa(ports[0]), "--inbound-port="+strconv.Itoa(ports[1]), "--admin-port="+strconv.Itoa(ports[2]))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := fmt.Sprintf("http://127.0.0.1:%d/ready", ports[2])
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(ready); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("weft-proxy not ready within 10 s")
		}
	}

	// The slow app: accepts, reads nothing.
	appLn, err := net.Listen("tcp", net.JoinHostPort(server.AppAddress(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer appLn.Close()
	go func() {
		for {
			c, err := appLn.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	client := newStore(t, ca.IssueValid(t, clientID), ca)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", ports[1]), client.ClientConfig(serverID, identity.ALPNHTTP2))
	if err != nil {
		t.Fatal(err)
	}
	r := newRawH2(t, c, true)
	hwmBefore := procKB(t, pid, "VmHWM")
	r.request(1, "POST", appLn.Addr().String(), false)
	frame := make([]byte, 16<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sent := 0
	for ; sent < 256<<20 && ctx.Err() == nil; sent += len(frame) {
		if err := r.data(1, false, frame); err != nil {
			t.Fatalf("after %d MiB: %v", sent>>20, err)
		}
		if sent%(16<<20) == 0 && procKB(t, pid, "VmRSS") > 256<<10 {
			break // buffering it all: stop before the machine suffers
		}
	}
	code, reset := r.reset(1, 5*time.Second)
	hwm := procKB(t, pid, "VmHWM")
	line := fmt.Sprintf("weft-proxy flooded with %d MiB on one stream: RST_STREAM %v (%v); VmHWM %.1f MB before, %.1f MB after",
		sent>>20, code, reset, float64(hwmBefore)/1000, float64(hwm)/1000)
	t.Log(line)
	if !reset || code != http2.ErrCodeFlowControl {
		t.Errorf("want RST_STREAM FLOW_CONTROL_ERROR: %s", line)
	}
	if hwm > 64000 {
		t.Errorf("peak RSS %.1f MB, want under 64 MB", float64(hwm)/1000)
	}
	// The proxy still serves: its admin answers and the connection is up.
	if resp, err := http.Get(ready); err != nil || resp.StatusCode != 200 {
		t.Errorf("after the flood /ready: %v %v", resp, err)
	}
}
