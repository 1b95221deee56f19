package svcname

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestParse(t *testing.T) {
	web := Service{Namespace: "shop", Name: "web"}
	cases := []struct {
		name   string
		host   string
		domain string
		form   Form
		want   Service
		ok     bool
	}{
		{"fqdn", "web.shop.svc.cluster.local", "cluster.local", FQDNOnly, web, true},
		{"fqdn, other domain configured", "web.shop.svc.example.org", "example.org", FQDNOnly, web, true},
		{"another cluster's domain is external", "web.shop.svc.example.org", "cluster.local", FQDNOnly, Service{}, false},
		{"domain is a suffix match, not a prefix", "web.shop.svc.cluster.local.evil.com", "cluster.local", Relative, Service{}, false},
		{"rooted name", "web.shop.svc.cluster.local.", "cluster.local", FQDNOnly, web, true},
		{"upper case", "Web.SHOP.svc.Cluster.Local", "cluster.local", FQDNOnly, web, true},
		{"configured domain with a dot", "web.shop.svc.cluster.local", "cluster.local.", FQDNOnly, web, true},
		{"name.ns.svc, relative allowed", "web.shop.svc", "cluster.local", Relative, web, true},
		{"name.ns.svc, FQDN required", "web.shop.svc", "cluster.local", FQDNOnly, Service{}, false},
		{"name.ns, relative allowed", "web.shop", "cluster.local", Relative, web, true},
		{"name.ns, FQDN required", "web.shop", "cluster.local", FQDNOnly, Service{}, false},
		{"one label", "web", "cluster.local", Relative, Service{}, false},
		{"external", "api.example.com", "cluster.local", Relative, Service{}, false},
		{"four labels, not svc", "web.shop.pod.cluster.local", "cluster.local", Relative, Service{}, false},
		{"extra label before svc", "a.web.shop.svc.cluster.local", "cluster.local", FQDNOnly, Service{}, false},
		{"service name starting with a digit", "1web.shop.svc.cluster.local", "cluster.local", FQDNOnly, Service{}, false},
		{"namespace starting with a digit", "web.1shop.svc.cluster.local", "cluster.local", FQDNOnly, Service{Namespace: "1shop", Name: "web"}, true},
		{"label ending in a hyphen", "web-.shop.svc.cluster.local", "cluster.local", FQDNOnly, Service{}, false},
		{"empty label", "web..svc.cluster.local", "cluster.local", FQDNOnly, Service{}, false},
		{"empty cluster domain configured", "web.shop.svc.", "", FQDNOnly, Service{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Parse(tc.host, tc.domain, tc.form)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("Parse(%q, %q) = %+v, %v; want %+v, %v", tc.host, tc.domain, got, ok, tc.want, tc.ok)
			}
			if ok && tc.form == FQDNOnly {
				if back, _ := Parse(got.FQDN(tc.domain), tc.domain, FQDNOnly); back != got {
					t.Fatalf("FQDN %q parses to %+v", got.FQDN(tc.domain), back)
				}
			}
		})
	}
}

func TestParseAuthority(t *testing.T) {
	web := Service{Namespace: "shop", Name: "web"}
	cases := []struct {
		name      string
		authority string
		want      Service
		port      uint16
		ok        bool
	}{
		{"with port", "web.shop.svc.cluster.local:8080", web, 8080, true},
		{"without port", "web.shop.svc.cluster.local", web, 80, true},
		{"port zero", "web.shop.svc.cluster.local:0", Service{}, 0, false},
		{"port too large", "web.shop.svc.cluster.local:65536", Service{}, 0, false},
		{"port not a number", "web.shop.svc.cluster.local:http", Service{}, 0, false},
		{"empty port", "web.shop.svc.cluster.local:", Service{}, 0, false},
		{"ip", "10.0.0.1:80", Service{}, 0, false},
		{"external", "example.com:443", Service{}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, port, ok := ParseAuthority(tc.authority, "cluster.local", FQDNOnly, 80)
			if got != tc.want || port != tc.port || ok != tc.ok {
				t.Fatalf("ParseAuthority(%q) = %+v, %d, %v; want %+v, %d, %v", tc.authority, got, port, ok, tc.want, tc.port, tc.ok)
			}
		})
	}
	if a := web.Authority("cluster.local", 8080); a != "web.shop.svc.cluster.local:8080" {
		t.Fatalf("Authority = %q", a)
	}
}

// TestLabelsAgreeWithKubernetes checks the hand-written label rules against
// apimachinery's validation, the rules the API server applies to Service and
// Namespace names.
func TestLabelsAgreeWithKubernetes(t *testing.T) {
	labels := []string{"a", "web", "web-1", "1web", "-web", "web-", "w--b", "", "Web", "w_b", "w.b",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "a1", "9", "x-9", "é"}
	for _, l := range labels {
		if got, want := isDNS1123Label(l), len(validation.IsDNS1123Label(l)) == 0; got != want {
			t.Errorf("isDNS1123Label(%q) = %v, Kubernetes says %v", l, got, want)
		}
		if got, want := isDNS1035Label(l), len(validation.IsDNS1035Label(l)) == 0; got != want {
			t.Errorf("isDNS1035Label(%q) = %v, Kubernetes says %v", l, got, want)
		}
	}
}

// FuzzParse: what parses is a Service whose FQDN parses back to itself, and the
// label rules agree with Kubernetes' for every name that parses.
func FuzzParse(f *testing.F) {
	f.Add("web.shop.svc.cluster.local", "cluster.local")
	f.Add("web.shop", "cluster.local")
	f.Fuzz(func(t *testing.T, host, domain string) {
		s, ok := Parse(host, domain, Relative)
		if !ok {
			return
		}
		if len(validation.IsDNS1035Label(s.Name)) != 0 || len(validation.IsDNS1123Label(s.Namespace)) != 0 {
			t.Fatalf("%q parsed to invalid %+v", host, s)
		}
		// The round trip needs a cluster domain that is one: ".." (found by the
		// fuzzer) trims to "." and then to nothing inside Parse.
		d := strings.ToLower(strings.TrimSuffix(domain, "."))
		if len(validation.IsDNS1123Subdomain(d)) == 0 {
			if back, ok := Parse(s.FQDN(d), d, FQDNOnly); !ok || back != s {
				t.Fatalf("%+v: FQDN %q parses to %+v, %v", s, s.FQDN(d), back, ok)
			}
		}
	})
}
