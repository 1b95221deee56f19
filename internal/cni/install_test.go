package cni

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/clientcmd"
)

// localConflist is the local cluster's (hack/cluster/up.sh), with its paths.
const localConflist = `{
  "cniVersion": "0.4.0",
  "name": "weft-local",
  "plugins": [
    {"type": "bridge", "bridge": "weft0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/tmp/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

func testInstaller(t *testing.T) (Installer, string) {
	t.Helper()
	dir := t.TempDir()
	bin, netDir, sa := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d"), filepath.Join(dir, "sa")
	for _, d := range []string{bin, netDir, sa} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(netDir, "10-weft.conflist"), localConflist)
	write(filepath.Join(netDir, "99-other.conflist"), localConflist)
	write(filepath.Join(sa, "token"), "token-1\n")
	write(filepath.Join(sa, "ca.crt"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	write(filepath.Join(dir, "weft-cni"), "#!binary v1")
	return Installer{
		BinDir: bin, NetDir: netDir, HostNetDir: "/etc/cni/net.d", Binary: filepath.Join(dir, "weft-cni"),
		APIServer: "https://10.96.0.1:443", TokenFile: filepath.Join(sa, "token"), CAFile: filepath.Join(sa, "ca.crt"),
		ExcludeNamespaces: []string{"kube-system"}, Log: logr.Discard(),
	}, dir
}

func pluginTypes(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s is not JSON after the edit: %v", path, err)
	}
	if doc.CNIVersion != "0.4.0" || doc.Name != "weft-local" {
		t.Errorf("the edit lost the conflist's own fields: %s", raw)
	}
	var out []string
	for _, p := range doc.Plugins {
		out = append(out, p["type"].(string))
	}
	return out
}

func TestInstallChainsIdempotently(t *testing.T) {
	in, _ := testInstaller(t)
	conflist := filepath.Join(in.NetDir, "10-weft.conflist")
	if err := in.Install(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pluginTypes(t, conflist), ","); got != "bridge,portmap,weft-cni" {
		t.Fatalf("plugins after install: %s, want bridge,portmap,weft-cni", got)
	}
	if got := strings.Join(pluginTypes(t, filepath.Join(in.NetDir, "99-other.conflist")), ","); got != "bridge,portmap" {
		t.Errorf("a conflist the runtime does not use was edited: %s", got)
	}
	first, _ := os.ReadFile(conflist)
	st1, _ := os.Stat(conflist)

	// Again: nothing changes, the file is not even rewritten.
	if err := in.Install(); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(conflist)
	st2, _ := os.Stat(conflist)
	if string(again) != string(first) || !st1.ModTime().Equal(st2.ModTime()) || !os.SameFile(st1, st2) {
		t.Errorf("a second install rewrote the conflist:\n%s\nthen:\n%s", first, again)
	}

	// The entry points the plugin at the kubeconfig by its host path.
	var doc struct{ Plugins []map[string]any }
	_ = json.Unmarshal(first, &doc)
	entry := doc.Plugins[2]
	if entry["kubeconfig"] != "/etc/cni/net.d/weft-cni.kubeconfig" {
		t.Errorf("kubeconfig path in the entry: %v", entry["kubeconfig"])
	}

	// The binary is installed executable, the kubeconfig root-only and loadable.
	if st, err := os.Stat(filepath.Join(in.BinDir, PluginType)); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("binary: %v %v", st, err)
	}
	kcPath := filepath.Join(in.NetDir, KubeconfigName)
	if st, err := os.Stat(kcPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig: %v %v", st, err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kcPath)
	if err != nil {
		t.Fatalf("the written kubeconfig does not load: %v", err)
	}
	if rc.Host != "https://10.96.0.1:443" || rc.BearerToken != "token-1" || len(rc.CAData) == 0 {
		t.Errorf("kubeconfig: host %q token %q ca %d bytes", rc.Host, rc.BearerToken, len(rc.CAData))
	}

	// A rotated token is picked up by the next round.
	if err := os.WriteFile(in.TokenFile, []byte("token-2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := in.Install(); err != nil {
		t.Fatal(err)
	}
	if rc, _ := clientcmd.BuildConfigFromFlags("", kcPath); rc == nil || rc.BearerToken != "token-2" {
		t.Errorf("the rotated token was not written")
	}
}

func TestInstallMovesWeftCNIBackToTheEnd(t *testing.T) {
	in, _ := testInstaller(t)
	conflist := filepath.Join(in.NetDir, "10-weft.conflist")
	if err := in.Install(); err != nil {
		t.Fatal(err)
	}
	// Another installer appends its plugin after ours, and leaves a stale duplicate.
	_, err := editConflist(conflist, func(p []any) ([]any, error) {
		return append(p, map[string]any{"type": "tuning"}, map[string]any{"type": PluginType, "kubeconfig": "/old"}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Install(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pluginTypes(t, conflist), ","); got != "bridge,portmap,tuning,weft-cni" {
		t.Errorf("plugins: %s, want weft-cni once and last", got)
	}
}

func TestUninstallRestoresTheConflist(t *testing.T) {
	in, _ := testInstaller(t)
	conflist := filepath.Join(in.NetDir, "10-weft.conflist")
	if err := in.Install(); err != nil {
		t.Fatal(err)
	}
	if err := in.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pluginTypes(t, conflist), ","); got != "bridge,portmap" {
		t.Errorf("plugins after uninstall: %s", got)
	}
	for _, p := range []string{filepath.Join(in.NetDir, KubeconfigName), filepath.Join(in.BinDir, PluginType)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	// Nothing else in the directory: no temporary files either.
	entries, _ := os.ReadDir(in.NetDir)
	if len(entries) != 2 {
		t.Errorf("conf dir holds %d files after uninstall, want the 2 conflists", len(entries))
	}
	// Uninstalling twice is fine.
	if err := in.Uninstall(); err != nil {
		t.Errorf("second uninstall: %v", err)
	}
}

func TestRunUninstallsWhenStopped(t *testing.T) {
	in, _ := testInstaller(t)
	conflist := filepath.Join(in.NetDir, "10-weft.conflist")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, 20*time.Millisecond) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasSuffix(strings.Join(pluginTypes(t, conflist), ","), PluginType) {
		if time.Now().After(deadline) {
			t.Fatal("not installed within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Someone rewrites the conflist without weft-cni (the primary CNI's own installer).
	if err := os.WriteFile(conflist, []byte(localConflist), 0o644); err != nil {
		t.Fatal(err)
	}
	for !strings.HasSuffix(strings.Join(pluginTypes(t, conflist), ","), PluginType) {
		if time.Now().After(deadline) {
			t.Fatal("not re-inserted after the conflist was rewritten")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pluginTypes(t, conflist), ","); got != "bridge,portmap" {
		t.Errorf("plugins after the installer stopped: %s", got)
	}
}

func TestConflistErrors(t *testing.T) {
	in, _ := testInstaller(t)
	for _, tc := range []struct{ name, file, content, want string }{
		{"empty plugins", "10-weft.conflist", `{"cniVersion":"1.0.0","name":"x","plugins":[]}`, "no plugins"},
		{"only weft-cni", "10-weft.conflist", `{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"weft-cni"}]}`, "no plugins"},
		{"not JSON", "10-weft.conflist", `{`, "parse"},
		{"no plugins list", "10-weft.conflist", `{"cniVersion":"1.0.0","name":"x"}`, "no plugins list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(in.NetDir, tc.file), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			err := in.Install()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Install() = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	t.Run("single-plugin conf first", func(t *testing.T) {
		in, _ := testInstaller(t)
		_ = os.WriteFile(filepath.Join(in.NetDir, "05-single.conf"), []byte(`{"type":"bridge"}`), 0o644)
		if err := in.Install(); err == nil || !strings.Contains(err.Error(), "single-plugin") {
			t.Errorf("Install() = %v, want the single-plugin error", err)
		}
	})
	t.Run("no conflist yet", func(t *testing.T) {
		in, _ := testInstaller(t)
		_ = os.Remove(filepath.Join(in.NetDir, "10-weft.conflist"))
		_ = os.Remove(filepath.Join(in.NetDir, "99-other.conflist"))
		if err := in.Install(); err == nil || !strings.Contains(err.Error(), "no *.conflist") {
			t.Errorf("Install() = %v", err)
		}
	})
}
