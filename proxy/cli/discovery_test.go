package cli

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/transport"
)

// TestDestinationFlags: the injector's environment reaches the destination client's
// settings, and a client that could not work is refused at start with the reason.
func TestDestinationFlags(t *testing.T) {
	t.Setenv("WEFT_DESTINATION_ADDR", "weft-destination.weft-system.svc.cluster.local:8086")
	t.Setenv("WEFT_DESTINATION_SERVER_NAME", "weft-destination.weft-system.svc")
	t.Setenv("POD_NAMESPACE", "shop")
	f, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.DestinationAddr != "weft-destination.weft-system.svc.cluster.local:8086" ||
		f.DestinationServerName != "weft-destination.weft-system.svc" || f.Namespace != "shop" {
		t.Fatalf("destination flags from env: %+v", f)
	}

	for _, tc := range []struct {
		name    string
		flags   Flags
		store   *identity.Store
		wantErr string
	}{
		{"ok", Flags{DestinationAddr: "127.0.0.1:8086", Namespace: "shop"}, &identity.Store{}, ""},
		{"namespace from the SPIFFE ID", Flags{DestinationAddr: "127.0.0.1:8086",
			IdentityName: "spiffe://cluster.local/ns/shop/sa/web"}, &identity.Store{}, ""},
		{"no identity", Flags{DestinationAddr: "127.0.0.1:8086", Namespace: "shop"}, nil, "needs an identity"},
		{"no port", Flags{DestinationAddr: "weft-destination", Namespace: "shop"}, &identity.Store{}, "--destination-addr"},
		{"no namespace", Flags{DestinationAddr: "127.0.0.1:8086"}, &identity.Store{}, "POD_NAMESPACE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newDiscovery(&tc.flags, tc.store, logr.Discard())
			if c != nil {
				defer c.Close()
			}
			if tc.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("want a client, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("want an error mentioning %q, got %v", tc.wantErr, err)
			}
		})
	}
}

// TestIdentityRenewAtPercentFlag: the share the injector passes is parsed, and a value
// outside the Mesh's 50..90 is refused at start with the reason.
func TestIdentityRenewAtPercentFlag(t *testing.T) {
	f, err := parseFlags([]string{"--identity-renew-at-percent=55"})
	if err != nil || f.IdentityRenewAt != 55 {
		t.Fatalf("parsed %+v, %v; want 55", f, err)
	}
	if f, _ := parseFlags(nil); f.IdentityRenewAt != identity.DefaultRenewAtPercent {
		t.Fatalf("default %d, want %d", f.IdentityRenewAt, identity.DefaultRenewAtPercent)
	}
	for _, bad := range []int{49, 91} {
		f := &Flags{IdentityMode: "mesh", IdentityAddr: "127.0.0.1:1", IdentityName: "spiffe://cluster.local/ns/shop/sa/web",
			IdentityRoots: "/nonexistent", IdentityRenewAt: bad}
		err := run(f, logr.Discard(), levelVar{zap.NewAtomicLevel()})
		if err == nil || !strings.Contains(err.Error(), "--identity-renew-at-percent") {
			t.Errorf("renew at %d: %v, want a refusal naming the flag", bad, err)
		}
	}
}

// TestMeshTLSFlags: the injector's WEFT_MESH_TLS_MODE and WEFT_CLUSTER_NETWORKS reach
// the server's options, and a value the proxy cannot use is refused at start, naming
// the flag.
func TestMeshTLSFlags(t *testing.T) {
	t.Setenv("WEFT_MESH_TLS_MODE", "Strict")
	t.Setenv("WEFT_CLUSTER_NETWORKS", "10.0.0.0/8, fd00::/8,192.168.1.7/16")
	f, err := parseFlags([]string{"--inbound-port=4243"})
	if err != nil {
		t.Fatal(err)
	}
	o, err := meshTLSOptions(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("192.168.0.0/16")}
	if o.Mode != transport.Strict || o.InboundPort != 4243 || !slices.Equal(o.ClusterNetworks, want) {
		t.Fatalf("options %+v, want Strict, inbound port 4243, %v", o, want)
	}
	if o, err := meshTLSOptions(&Flags{}); err != nil || o.Mode != transport.Opportunistic || len(o.ClusterNetworks) != 0 {
		t.Fatalf("defaults %+v, %v: want Opportunistic without cluster networks (static mode)", o, err)
	}
	// A proxy of the mesh that got no networks takes the Mesh's default ranges.
	o, err = meshTLSOptions(&Flags{DestinationAddr: "127.0.0.1:8086"})
	if err != nil || len(o.ClusterNetworks) != 5 || !o.ClusterNetworks[0].Contains(netip.MustParseAddr("10.1.2.3")) {
		t.Fatalf("mesh mode defaults %+v, %v: want the Mesh's default clusterNetworks", o, err)
	}
	for _, tc := range []struct{ mode, networks, flag string }{
		{"strict", "", "--mesh-tls-mode"},
		{"", "10.0.0.0", "--cluster-networks"},
		{"", "10.0.0.0/8,nonsense", "--cluster-networks"},
	} {
		if _, err := meshTLSOptions(&Flags{MeshTLSMode: tc.mode, ClusterNetworks: tc.networks}); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("mode %q networks %q: %v, want an error naming %s", tc.mode, tc.networks, err, tc.flag)
		}
	}
}
