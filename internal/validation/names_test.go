package validation

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestParseServiceName(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    *types.NamespacedName
		wantErr string
	}{
		{"service FQDN", "web.shop.svc.cluster.local", &types.NamespacedName{Namespace: "shop", Name: "web"}, ""},
		{"external name", "api.example.com", nil, ""},
		{"single label", "web", nil, "fully qualified"},
		{"upper case", "Web.shop.svc.cluster.local", nil, "DNS name"},
		{"pod-style extra label", "x.web.shop.svc.cluster.local", nil, "<service>.<namespace>"},
		{"no namespace", "web.svc.cluster.local", nil, "<service>.<namespace>"},
		{"other cluster domain", "web.shop.svc.other.local", nil, "looks like a Service"},
		{"bare .svc", "web.shop.svc", nil, "looks like a Service"},
		{"service starting with a digit", "1web.shop.svc.cluster.local", nil, "service name"},
		{"label too long", strings.Repeat("a", 64) + ".example.com", nil, "63"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseServiceName(tc.in, "cluster.local")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseAuthority(t *testing.T) {
	cases := []struct {
		in, host, wantErr string
	}{
		{"web.shop.svc.cluster.local:80", "web.shop.svc.cluster.local", ""},
		{"web.shop.svc.cluster.local", "web.shop.svc.cluster.local", ""},
		{"web:0", "", "between 1 and 65535"},
		{"web:http", "", "between 1 and 65535"},
		{"a:b:c", "", "host or host:port"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			host, err := parseAuthority(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || host != tc.host {
				t.Errorf("got %q, %v; want %q", host, err, tc.host)
			}
		})
	}
}
