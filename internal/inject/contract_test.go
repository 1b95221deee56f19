package inject_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
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

	corev1 "k8s.io/api/core/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/freeport"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/testenv"
)

// The injected containers' command lines are a contract with two other programs. These
// tests run the real weft-proxy and weft-init binaries with exactly what injection
// writes, so a flag or value one side does not understand fails here rather than in a
// pod that never becomes ready.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		binDir, buildErr = os.MkdirTemp("", "weft-inject-contract-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/weft-proxy", "./cmd/weft-init")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func freePort(t *testing.T) int32 {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return int32(port)
}

// writeRoots writes a self-signed P-256 CA as the trust roots file.
func writeRoots(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test anchor"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ca-bundle.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// kubeletEnv resolves the container's environment as the kubelet would for a pod
// named web in namespace shop with ServiceAccount web: downward-API fields, then $(VAR)
// references to earlier variables.
func kubeletEnv(c corev1.Container) []string {
	fields := map[string]string{"metadata.name": "web-0", "metadata.namespace": "shop", "status.podIP": "127.0.0.1",
		"status.podIPs": "127.0.0.1", "spec.nodeName": "node-1", "spec.serviceAccountName": "web"}
	vals := map[string]string{}
	var out []string
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			v = fields[e.ValueFrom.FieldRef.FieldPath]
		}
		for k, kv := range vals {
			v = strings.ReplaceAll(v, "$("+k+")", kv)
		}
		vals[e.Name] = v
		out = append(out, e.Name+"="+v)
	}
	return out
}

func TestProxyAcceptsInjectedCommandLine(t *testing.T) {
	bin := binaries(t)
	cases := []struct {
		name      string
		policy    meshv1alpha1.InboundPolicy
		logLevel  string
		renewAt   int32
		wantStart bool
	}{
		{"defaults", meshv1alpha1.InboundAllUnauthenticated, "info", 70, true},
		{"all-authenticated, debug", meshv1alpha1.InboundAllAuthenticated, "debug", 70, true},
		{"deny, error", meshv1alpha1.InboundDeny, "error", 70, true},
		{"warn", meshv1alpha1.InboundAllUnauthenticated, "warn", 50, true},
		{"trace", meshv1alpha1.InboundAllUnauthenticated, "trace", 90, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			admin, inbound, outbound := freePort(t), freePort(t), freePort(t)
			mesh := inject.DefaultMeshSpec()
			mesh.Proxy.DefaultInboundPolicy = tc.policy
			mesh.Proxy.LogLevel = meshv1alpha1.LogLevel(tc.logLevel)
			mesh.Identity.Workload.RenewAtPercent = tc.renewAt
			tpl := template(map[string]string{
				inject.AnnotationAdminPort: strconv.Itoa(int(admin)), inject.AnnotationInboundPort: strconv.Itoa(int(inbound)),
				inject.AnnotationOutboundPort: strconv.Itoa(int(outbound)),
			}, nil)
			if errs := inject.Inject(tpl, enabledNS("shop"), mesh, inject.Env{}); len(errs) > 0 {
				t.Fatal(errs)
			}
			_, proxy := proxyOf(t, tpl)

			// Only the file paths and the control-plane address change: the pod's
			// paths do not exist here, and the test must not resolve cluster DNS.
			args := make([]string, 0, len(proxy.Args))
			for _, a := range proxy.Args {
				if strings.HasPrefix(a, "--identity-roots=") {
					a = "--identity-roots=" + writeRoots(t, dir)
				}
				args = append(args, a)
			}
			token := filepath.Join(dir, "token")
			if err := os.WriteFile(token, []byte("not-a-real-token"), 0o600); err != nil {
				t.Fatal(err)
			}
			env := []string{"PATH=" + os.Getenv("PATH")}
			for _, kv := range kubeletEnv(proxy) {
				switch {
				case strings.HasPrefix(kv, "WEFT_IDENTITY_TOKEN_FILE="):
					kv = "WEFT_IDENTITY_TOKEN_FILE=" + token
				case strings.HasPrefix(kv, "WEFT_IDENTITY_ADDR="):
					kv = fmt.Sprintf("WEFT_IDENTITY_ADDR=127.0.0.1:%d", freePort(t)) // nothing listens: the proxy retries
				case strings.HasPrefix(kv, "WEFT_DESTINATION_ADDR="):
					kv = fmt.Sprintf("WEFT_DESTINATION_ADDR=127.0.0.1:%d", freePort(t))
				}
				env = append(env, kv)
			}
			if got := envOf(env, "WEFT_IDENTITY_LOCAL_NAME"); got != "spiffe://cluster.local/ns/shop/sa/web" {
				t.Fatalf("the kubelet would give WEFT_IDENTITY_LOCAL_NAME=%q", got)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(bin, "weft-proxy"), args...)
			cmd.Env = env
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stderr, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()

			live, ready := poll(t, admin, exited)
			if !tc.wantStart {
				if live {
					t.Fatalf("weft-proxy served /live; this case was expected to be refused")
				}
				t.Logf("weft-proxy refused, as expected: %s", lastLine(stderr.String()))
				return
			}
			if !live {
				t.Fatalf("weft-proxy did not serve /live with the injected command line %q:\n%s", args, stderr.String())
			}
			// Without a certificate the proxy is live but not ready: the startup probe
			// holds the app back, which is the point of the probe.
			if ready {
				t.Errorf("/ready is 200 although no certificate could be obtained")
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("weft-proxy exited with %v after SIGTERM:\n%s", err, stderr.String())
				}
			case <-time.After(10 * time.Second):
				t.Errorf("weft-proxy did not exit within 10s of SIGTERM")
			}
		})
	}
}

// poll waits up to 10s for /live on the admin port and reports /live and /ready.
func poll(t *testing.T, admin int32, exited chan error) (live, ready bool) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	base := fmt.Sprintf("http://127.0.0.1:%d", admin)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false, false
		default:
		}
		if resp, err := c.Get(base + "/live"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				r, err := c.Get(base + "/ready")
				if err != nil {
					t.Fatal(err)
				}
				r.Body.Close()
				return true, r.StatusCode == http.StatusOK
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false, false
}

func envOf(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}

func TestInitAcceptsInjectedCommandLine(t *testing.T) {
	bin := binaries(t)
	cases := []struct {
		name    string
		ann     map[string]string
		want    []string
		notWant []string
	}{
		// The tap port 4190 is skipped: the control plane's tap API reaches the
		// proxy's tap server there directly (it authenticates the tap identity).
		{"defaults", nil, []string{"--uid-owner 2102", "--to-ports 4143", "--to-ports 4140", "--dport 4191", "--dport 4190"}, nil},
		{"everything overridden", map[string]string{
			inject.AnnotationProxyUID: "3000", inject.AnnotationInboundPort: "5143", inject.AnnotationOutboundPort: "5140",
			inject.AnnotationSkipInboundPorts: "22,9000-9100", inject.AnnotationSkipOutboundPorts: "25,5432",
			inject.AnnotationSkipSubnets: "10.1.0.0/16,fd00::/8",
		}, []string{"--uid-owner 3000", "--to-ports 5143", "--to-ports 5140", "--dport 22", "--dport 9000:9100", "--dport 5432", "-d 10.1.0.0/16", "-d fd00::/8", "--dport 4190"},
			nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tpl := template(tc.ann, nil)
			if errs := inject.Inject(tpl, enabledNS("shop"), inject.DefaultMeshSpec(), inject.Env{}); len(errs) > 0 {
				t.Fatal(errs)
			}
			initc, _ := proxyOf(t, tpl)
			// --dry-run prints the iptables commands instead of running them, so the
			// host's tables are never touched.
			out, err := exec.Command(filepath.Join(bin, "weft-init"), append(initc.Args, "--dry-run")...).CombinedOutput()
			if err != nil {
				t.Fatalf("weft-init rejected the injected arguments %q: %v\n%s", initc.Args, err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("weft-init's rules lack %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(string(out), w) {
					t.Errorf("weft-init's rules have %q:\n%s", w, out)
				}
			}
		})
	}
}
