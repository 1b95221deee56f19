package h1

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// BenchmarkH1RoundTrip compares http.Transport with Client on a keep-alive
// loopback connection: a GET answered with 1 KiB, the body read to the end.
func BenchmarkH1RoundTrip(b *testing.B) {
	body := strings.Repeat("x", 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	var p1 http.Protocols
	p1.SetHTTP1(true)
	tr := &http.Transport{Protocols: &p1, DialContext: dial, MaxIdleConnsPerHost: 16, DisableCompression: true}
	defer tr.CloseIdleConnections()
	fast := &Client{Dial: dial, IdleTimeout: time.Minute, MaxIdle: 16}
	defer fast.CloseIdle(true)
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"transport", tr}, {"h1client", fast}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: u.Host, Path: "/"}, Header: http.Header{}, Host: u.Host}
				resp, err := bc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}
