package transport

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/proxy/internal/h2"
	"github.com/weftmesh/weft/proxy/internal/replay"
)

// A POST whose body an app sent once (no GetBody) goes out again on a new
// connection when the peer proxy's first connection refused it unprocessed (GOAWAY,
// last stream 0): replayable keeps the body for the weft.h2 client. A body that is
// an attempt of the pipeline's retries is left to them.
func TestReplayableAfterGoAway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var dials atomic.Int32
	srv := &http2.Server{}
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n%2 == 0 {
				go goAwayFirstRequest(c)
				continue
			}
			go srv.ServeConn(c, &http2.ServeConnOpts{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				io.WriteString(w, "second connection, body "+string(b))
			})})
		}
	}()
	dial := func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}
	post := func(body io.ReadCloser) *http.Request {
		r, _ := http.NewRequest("POST", "http://peer/", body)
		r.ContentLength = int64(len("payload"))
		return r
	}

	c := h2.NewClient(dial)
	defer c.CloseIdle()
	resp, err := replayable{c}.RoundTrip(post(io.NopCloser(strings.NewReader("payload"))))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "second connection, body payload"; string(got) != want || dials.Load() != 2 {
		t.Fatalf("got %q after %d dials, want %q from a second connection", got, dials.Load(), want)
	}

	// The pipeline's retries replay their own attempts: the transport does not.
	c2 := h2.NewClient(dial)
	defer c2.CloseIdle()
	rb := replay.New(io.NopCloser(strings.NewReader("payload")), int64(len("payload")))
	attempt, _ := rb.Next()
	if _, err := (replayable{c2}).RoundTrip(post(attempt)); err == nil || dials.Load() != 3 {
		t.Fatalf("got %v after %d dials, want the GOAWAY's error from one more connection", err, dials.Load())
	}
}

// goAwayFirstRequest answers the first request on c with GOAWAY (last stream 0:
// nothing processed).
func goAwayFirstRequest(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, br)
	fr.WriteSettings()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if _, ok := f.(*http2.HeadersFrame); ok {
			fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			time.Sleep(100 * time.Millisecond)
			return
		}
	}
}
