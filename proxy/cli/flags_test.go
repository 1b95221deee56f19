package cli

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

func TestParsePortRanges(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []uint16
		wantErr bool
	}{
		{"empty", "", nil, false},
		{"singles", "25,3306", []uint16{25, 3306}, false},
		{"range", "4000-4002,9", []uint16{4000, 4001, 4002, 9}, false},
		{"spaces", " 25 , 26 ", []uint16{25, 26}, false},
		{"reversed range", "10-5", nil, true},
		{"zero", "0", nil, true},
		{"too big", "70000", nil, true},
		{"junk", "smtp", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePortRanges(tt.in)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("parsePortRanges(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
}

// TestEnvironmentOverrides: the settings the injector passes as environment
// variables reach the configuration, and bad ones are rejected with the field named.
func TestEnvironmentOverrides(t *testing.T) {
	t.Setenv("WEFT_OPAQUE_PORTS", "25,3306-3307")
	t.Setenv("WEFT_DEFAULT_INBOUND_POLICY", "all-authenticated")
	t.Setenv("WEFT_DETECT_TIMEOUT", "250ms")
	t.Setenv("WEFT_IDENTITY_ADDR", "weft-identity.weft-system.svc.cluster.local:8080")
	t.Setenv("WEFT_IDENTITY_LOCAL_NAME", "spiffe://cluster.local/ns/a/sa/b")
	f, err := parseFlags([]string{"--identity-mode=mesh"})
	if err != nil {
		t.Fatal(err)
	}
	if f.IdentityAddr != "weft-identity.weft-system.svc.cluster.local:8080" || f.IdentityName != "spiffe://cluster.local/ns/a/sa/b" {
		t.Fatalf("identity flags from env: %+v", f)
	}
	cfg := &config.Config{}
	if err := applyOverrides(cfg, f); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.OpaquePorts, []uint16{25, 3306, 3307}) || cfg.Inbound.DefaultPolicy != config.PolicyAllAuthenticated || cfg.DetectTimeout.Duration != 250*time.Millisecond {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	// A name the proxy does not know denies (it never allows), and says so.
	var warned []error
	f.warn = func(err error) { warned = append(warned, err) }
	f.InboundPolicy = "open"
	cfg = &config.Config{}
	if err := applyOverrides(cfg, f); err != nil || cfg.Inbound.DefaultPolicy != config.PolicyDeny || len(warned) != 1 || !strings.Contains(warned[0].Error(), `"open"`) {
		t.Fatalf("unknown policy: %v, policy %q, warnings %v; want deny with one warning", err, cfg.Inbound.DefaultPolicy, warned)
	}
}

// TestInboundPolicyEnvironment: every default policy name, the cluster networks and
// the probe paths the injector passes reach the inbound configuration; bad ones are
// refused with the flag or field named.
func TestInboundPolicyEnvironment(t *testing.T) {
	for _, name := range []string{"all-unauthenticated", "all-authenticated", "cluster-unauthenticated", "cluster-authenticated", "deny", "audit"} {
		t.Setenv("WEFT_DEFAULT_INBOUND_POLICY", name)
		f, err := parseFlags(nil)
		if err != nil {
			t.Fatal(err)
		}
		f.warn = func(err error) { t.Errorf("%s: unexpected warning %v", name, err) }
		cfg := &config.Config{}
		if err := applyOverrides(cfg, f); err != nil || string(cfg.Inbound.DefaultPolicy) != name {
			t.Fatalf("%s: %v, got %q", name, err, cfg.Inbound.DefaultPolicy)
		}
	}
	t.Setenv("WEFT_CLUSTER_NETWORKS", "10.0.0.0/8, fd00::/8")
	t.Setenv("WEFT_INBOUND_PROBE_PATHS", "8080:/healthz,9090:/ready")
	f, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{}
	if err := applyOverrides(cfg, f); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Inbound.ClusterNetworks, []string{"10.0.0.0/8", "fd00::/8"}) ||
		!slices.Equal(cfg.Inbound.ProbePaths, []config.ProbePath{{Port: 8080, Path: "/healthz"}, {Port: 9090, Path: "/ready"}}) {
		t.Fatalf("inbound overrides not applied: %+v", cfg.Inbound)
	}
	f.ClusterNetworks = "10.0.0.0/33"
	if err := applyOverrides(&config.Config{}, f); err == nil || !strings.Contains(err.Error(), "inbound.clusterNetworks[0]") {
		t.Fatalf("bad cluster network: %v", err)
	}
	f.ClusterNetworks = ""
	for _, bad := range []string{"http:/healthz", "8080/healthz", "0:/x", "8080:healthz"} {
		f.ProbePaths = bad
		if err := applyOverrides(&config.Config{}, f); err == nil || !strings.Contains(err.Error(), "--inbound-probe-paths") {
			t.Fatalf("bad probe paths %q: %v", bad, err)
		}
	}
}

// TestLimitOverrides: the idle timeout, the connection limits come
// from flags or the environment; bad values are refused with the field or flag named.
func TestLimitOverrides(t *testing.T) {
	t.Setenv("WEFT_TCP_IDLE_TIMEOUT", "10m")
	t.Setenv("WEFT_MAX_INBOUND_CONNECTIONS", "300")
	f, err := parseFlags([]string{"--max-outbound-connections=400"})
	if err != nil {
		t.Fatal(err)
	}
	if f.UnsafeLoopbackApps {
		t.Fatal("unsafe loopback apps on by default")
	}
	cfg := &config.Config{}
	if err := applyOverrides(cfg, f); err != nil {
		t.Fatal(err)
	}
	if cfg.TCPIdleTimeout.Duration != 10*time.Minute || cfg.Inbound.MaxConnections != 300 || cfg.Outbound.MaxConnections != 400 {
		t.Fatalf("overrides not applied: idle %s, limits %d/%d", cfg.TCPIdleTimeout.Duration, cfg.Inbound.MaxConnections, cfg.Outbound.MaxConnections)
	}
	f.MaxInboundConnections = -1
	if err := applyOverrides(&config.Config{}, f); err == nil || !strings.Contains(err.Error(), "inbound.maxConnections") {
		t.Fatalf("negative limit: %v", err)
	}
	if _, err := parseFlags([]string{"--admin-port=70000"}); err == nil || !strings.Contains(err.Error(), "--admin-port") {
		t.Fatalf("admin port out of range: %v", err)
	}
}
