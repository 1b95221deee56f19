package cli_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// TestAwaitBinary runs the await subcommand of the built weft-proxy against a
// weft-proxy whose identity files appear only later: it must wait, and return once the
// proxy loaded them.
func TestAwaitBinary(t *testing.T) {
	bin := buildProxy(t)
	dir := t.TempDir()
	admin := freePort(t)
	cert, key, roots := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "roots.pem")
	proxy := exec.Command(bin, "--listen-addr", "127.0.0.1", "--admin-addr", "127.0.0.1",
		"--outbound-port", strconv.Itoa(freePort(t)), "--inbound-port", strconv.Itoa(freePort(t)), "--admin-port", strconv.Itoa(admin),
		"--identity-cert", cert, "--identity-key", key, "--identity-roots", roots, "--identity-reload-interval", "50ms")
	var proxyErr lockedBuffer
	proxy.Stderr = &proxyErr
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proxy.Process.Kill()
		proxy.Wait()
		if t.Failed() {
			t.Logf("weft-proxy:\n%s", proxyErr.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	await := exec.CommandContext(ctx, bin, "await", "--admin-port="+strconv.Itoa(admin), "--timeout=15s")
	var awaitOut bytes.Buffer
	await.Stdout, await.Stderr = &awaitOut, &awaitOut
	if err := await.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- await.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("await returned (%v) before the proxy had an identity: %s", err, awaitOut.String())
	case <-time.After(time.Second):
	}

	ca := testpki.NewCA(t, "anchor")
	c, k, r := testpki.Files(t, t.TempDir(), ca.IssueValid(t, "spiffe://weft.test/ns/a/sa/web"), ca.PEM)
	for src, dst := range map[string]string{c: cert, k: key, r: roots} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("await: %v: %s", err, awaitOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("await did not return after the proxy loaded its identity")
	}
}
