package destination

import (
	"testing"

	"github.com/weftmesh/weft/proxy/api"
)

// TestBalanceEndpointsZone: an endpoint is local when its for_zones name the
// client's zone; an endpoint without for_zones prefers nothing; a client without a
// zone has no local endpoint.
func TestBalanceEndpointsZone(t *testing.T) {
	b := &api.Backend{Key: "shop/web:80", Endpoints: []*api.Endpoint{
		{Address: "10.1.0.1", Port: 80, Zone: "zone-a", ForZones: []string{"zone-a"}},
		{Address: "10.1.0.2", Port: 80, Zone: "zone-b", ForZones: []string{"zone-a", "zone-b"}},
		{Address: "10.1.0.3", Port: 80, Zone: "zone-b", ForZones: []string{"zone-b"}},
		{Address: "10.1.0.4", Port: 80, Zone: "zone-a"},
	}}
	for _, tc := range []struct {
		zone            string
		prefer, wantLoc []bool
	}{
		{"zone-a", []bool{true, true, true, false}, []bool{true, true, false, false}},
		{"zone-b", []bool{true, true, true, false}, []bool{false, true, true, false}},
		{"", []bool{true, true, true, false}, []bool{false, false, false, false}},
	} {
		eps := balanceEndpoints(b, tc.zone)
		for i, e := range eps {
			if e.PreferZone != tc.prefer[i] || e.Local != tc.wantLoc[i] {
				t.Errorf("client zone %q, endpoint %s: PreferZone %v Local %v, want %v %v", tc.zone, e.Addr, e.PreferZone, e.Local, tc.prefer[i], tc.wantLoc[i])
			}
		}
	}
}
