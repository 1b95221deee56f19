package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/server"
)

// TestOutboundDstLabels: the outbound request, response and route series carry the
// labels the destination service gives each endpoint (dst_deployment, dst_pod, ...)
// as Linkerd's do, one series per endpoint picked, over mTLS to a real peer proxy;
// labels that are not dst_* names are not written, so a control plane cannot overwrite
// the proxy's own labels or break the exposition.
func TestOutboundDstLabels(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	const svc = "10.96.1.12:80"
	labelled := func(a *app, deploy string) *api.Endpoint {
		e := ep(a.addr)
		e.Identity, e.ProxyPort = spiffe("b", serverSA), uint32(mp.b.inboundPort())
		e.MetricLabels = []*api.Label{
			{Name: "authority", Value: "forged"},
			{Name: "dst_bad-name", Value: "x"},
			{Name: "dst_deployment", Value: deploy},
			{Name: "dst_namespace", Value: "shop"},
			{Name: "dst_pod", Value: deploy + "-5f7b9c-abcde"},
			{Name: "dst_service", Value: "web"},
		}
		return e
	}
	v1, v2 := newApp(t, "v1", nil), newApp(t, "v2", nil)
	src := newTestSource()
	a := startProxy(t, &config.Config{}, newStore(t, mp.ca.IssueValid(t, spiffe("a", clientSA)), mp.ca), func(o *server.Options) { o.Source = src })
	rp := &routedProxy{proxy: a, src: src, addr: a.outbound(svc)}
	src.set(dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
		Backends: []*api.WeightedBackend{wb("shop/v1:80", 1), wb("shop/v2:80", 1)}}}, nil,
		&api.Backend{Key: "shop/v1:80", Endpoints: []*api.Endpoint{labelled(v1, "web-v1")}},
		&api.Backend{Key: "shop/v2:80", Endpoints: []*api.Endpoint{labelled(v2, "web-v2")}}))
	c := h1Client()
	for range 40 {
		if res := rp.do(c, http.MethodGet, "/", nil, nil); res.err != nil || res.status != 200 {
			t.Fatalf("request: %+v", res)
		}
	}
	text := a.metricsText()
	var total float64
	for _, deploy := range []string{"web-v1", "web-v2"} {
		want := []string{`direction="outbound"`, `dst_deployment="` + deploy + `"`, `dst_namespace="shop"`,
			`dst_pod="` + deploy + `-5f7b9c-abcde"`, `dst_service="web"`, `server_id="` + spiffe("b", serverSA) + `"`}
		n := metricValue(text, "request_total", want...)
		if n <= 0 {
			t.Fatalf("no request_total with %v in:\n%s", want, grepLines(text, "request_total{"))
		}
		if r := metricValue(text, "response_total", append(want, `status_code="200"`)...); r != n {
			t.Fatalf("response_total of %s = %v, want %v", deploy, r, n)
		}
		total += n
	}
	if total != 40 {
		t.Fatalf("request_total over both endpoints = %v, want 40", total)
	}
	if v := metricValue(text, "route_request_total", `rt_route="all"`, `dst_namespace="shop"`, `dst_service="web"`); v != 40 {
		t.Fatalf("route_request_total with the Service's labels = %v, want 40", v)
	}
	for _, bad := range []string{`forged`, `dst_bad-name`} {
		if strings.Contains(text, bad) {
			t.Fatalf("exposition carries a label it must drop (%s)", bad)
		}
	}
}
