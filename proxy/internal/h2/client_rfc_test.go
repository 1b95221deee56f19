package h2

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// scriptedPeer is a peer proxy that answers each request the mesh client sends with
// frames of the test's choosing, and records the client's resets and GOAWAY.
type scriptedPeer struct {
	fr   *http2.Framer
	wmu  sync.Mutex
	henc *hpack.Encoder
	hbuf bytes.Buffer

	mu      sync.Mutex
	changed chan struct{}
	rst     map[uint32]http2.ErrCode
	goAway  *http2.ErrCode
}

// startScriptedPeer listens on loopback; answer runs on the read loop for each
// request's HEADERS.
func startScriptedPeer(t *testing.T, answer func(p *scriptedPeer, id uint32), settings ...http2.Setting) (*scriptedPeer, func(context.Context) (net.Conn, error)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &scriptedPeer{changed: make(chan struct{}), rst: map[uint32]http2.ErrCode{}}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(br, preface); err != nil {
			return
		}
		p.fr = http2.NewFramer(c, br)
		p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		p.henc = hpack.NewEncoder(&p.hbuf)
		p.write(func(fr *http2.Framer) error { return fr.WriteSettings(settings...) })
		for {
			f, err := p.fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				answer(p, f.StreamID)
			case *http2.SettingsFrame:
				if !f.IsAck() {
					p.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
				}
			case *http2.RSTStreamFrame:
				p.record(func() { p.rst[f.StreamID] = f.ErrCode })
			case *http2.GoAwayFrame:
				code := f.ErrCode
				p.record(func() { p.goAway = &code })
			}
		}
	}()
	return p, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}
}

func (p *scriptedPeer) record(f func()) {
	p.mu.Lock()
	f()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *scriptedPeer) write(f func(fr *http2.Framer) error) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return f(p.fr)
}

// headers writes a header block from name, value pairs.
func (p *scriptedPeer) headers(id uint32, end bool, fields ...string) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		p.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndStream: end, EndHeaders: true})
}

// waitFor waits up to d for cond (called with mu held).
func (p *scriptedPeer) waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.After(d)
	for {
		p.mu.Lock()
		ok, ch := cond(), p.changed
		p.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// A peer that ignores the client's stream window gets RST_STREAM(FLOW_CONTROL_ERROR),
// and the client's heap stays bounded while its caller does not read.
func TestClientFlowControlStream(t *testing.T) {
	grown := make(chan int64, 1)
	before := heapInuse()
	peer, dial := startScriptedPeer(t, func(p *scriptedPeer, id uint32) {
		p.headers(id, false, ":status", "200")
		go func() {
			frame := make([]byte, 16<<10)
			for sent := 0; sent < 64<<20; sent += len(frame) {
				if p.write(func(fr *http2.Framer) error { return fr.WriteData(id, false, frame) }) != nil {
					break
				}
				if sent%(8<<20) == 0 {
					if g := int64(heapInuse()) - int64(before); g > 48<<20 {
						grown <- g
						return
					}
				}
			}
			grown <- int64(heapInuse()) - int64(before)
		}()
	})
	m := NewClient(dial)
	defer m.CloseIdle()
	req, _ := http.NewRequest("GET", "http://peer/", nil)
	resp, err := m.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	g := <-grown
	if !peer.waitFor(5*time.Second, func() bool { _, ok := peer.rst[1]; return ok }) || peer.rst[1] != http2.ErrCodeFlowControl {
		t.Fatalf("64 MiB past the window on one stream: client reset %v, heap grew %d MiB; want FLOW_CONTROL_ERROR", peer.rst, g>>20)
	}
	t.Logf("64 MiB sent ignoring flow control: the client's heap grew by %.1f MiB", float64(g)/(1<<20))
	if g > 16<<20 {
		t.Fatalf("the client's heap grew by %d MiB", g>>20)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("the body of a stream reset for flow control read to its end")
	}
}

// Streams inside their windows that together pass the client's connection window
// get GOAWAY(FLOW_CONTROL_ERROR).
func TestClientFlowControlConnection(t *testing.T) {
	peer, dial := startScriptedPeer(t, func(p *scriptedPeer, id uint32) {
		p.headers(id, false, ":status", "200")
		chunk := make([]byte, 16<<10)
		for n := 0; n < clientStreamWindow; n += len(chunk) {
			p.write(func(fr *http2.Framer) error { return fr.WriteData(id, false, chunk) })
		}
	})
	m := NewClient(dial)
	defer m.CloseIdle()
	streams := clientConnWindow/clientStreamWindow + 2
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", "http://peer/", nil)
			if resp, err := m.RoundTrip(req); err == nil {
				time.Sleep(2 * time.Second) // does not read
				resp.Body.Close()
			}
		}()
	}
	if !peer.waitFor(5*time.Second, func() bool { return peer.goAway != nil }) || *peer.goAway != http2.ErrCodeFlowControl {
		t.Fatalf("%d streams x %d MiB against a %d MiB connection window: GOAWAY %v, want FLOW_CONTROL_ERROR",
			streams, clientStreamWindow>>20, clientConnWindow>>20, peer.goAway)
	}
	wg.Wait()
}

// Responses the RFC calls malformed, windows past 2^31-1, and endless 1xx fail the
// request, and the client resets the stream or closes the connection as the RFC says.
func TestClientMalformedResponses(t *testing.T) {
	data := func(p *scriptedPeer, id uint32, end bool, s string) {
		p.write(func(fr *http2.Framer) error { return fr.WriteData(id, end, []byte(s)) })
	}
	tests := []struct {
		name   string
		answer func(p *scriptedPeer, id uint32)
		code   http2.ErrCode // the client's RST_STREAM; 0xff: GOAWAY FLOW_CONTROL_ERROR
	}{
		{"more 1xx than the HTTP/1.1 path allows", func(p *scriptedPeer, id uint32) {
			for range httpmsg.Max1xxResponses + 1 {
				p.headers(id, false, ":status", "103", "link", "</a.css>")
			}
			p.headers(id, true, ":status", "200")
		}, http2.ErrCodeProtocol},
		{"connection-specific field", func(p *scriptedPeer, id uint32) {
			p.headers(id, true, ":status", "200", "connection", "close")
		}, http2.ErrCodeProtocol},
		{"DATA shorter than content-length", func(p *scriptedPeer, id uint32) {
			p.headers(id, false, ":status", "200", "content-length", "10")
			data(p, id, true, "01234")
		}, http2.ErrCodeProtocol},
		{"DATA longer than content-length", func(p *scriptedPeer, id uint32) {
			p.headers(id, false, ":status", "200", "content-length", "5")
			data(p, id, false, "hello")
			time.Sleep(50 * time.Millisecond)
			data(p, id, true, "!")
		}, http2.ErrCodeProtocol},
		{"header list over the limit", func(p *scriptedPeer, id uint32) {
			p.headers(id, true, ":status", "200", "x-a", strings.Repeat("a", MaxHeaderList/2), "x-b", strings.Repeat("b", MaxHeaderList/2))
		}, http2.ErrCodeCancel},
		{"DATA before HEADERS", func(p *scriptedPeer, id uint32) {
			data(p, id, true, "early")
		}, http2.ErrCodeProtocol},
		{"stream window past 2^31-1", func(p *scriptedPeer, id uint32) {
			p.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(id, 1<<31-1) })
		}, http2.ErrCodeFlowControl},
		{"connection window past 2^31-1", func(p *scriptedPeer, id uint32) {
			p.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, 1<<31-1) })
		}, 0xff},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			peer, dial := startScriptedPeer(t, tc.answer)
			m := NewClient(dial)
			defer m.CloseIdle()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://peer/", nil)
			resp, err := m.RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("the request ended with %v, want a protocol error", err)
			}
			if tc.code == 0xff {
				if !peer.waitFor(5*time.Second, func() bool { return peer.goAway != nil }) || *peer.goAway != http2.ErrCodeFlowControl {
					t.Fatalf("GOAWAY %v, want FLOW_CONTROL_ERROR", peer.goAway)
				}
				return
			}
			if !peer.waitFor(5*time.Second, func() bool { _, ok := peer.rst[1]; return ok }) || peer.rst[1] != tc.code {
				t.Fatalf("client resets %v, want stream 1 reset with %v (error %v)", peer.rst, tc.code, err)
			}
		})
	}
}

// A request whose header list is over the peer's SETTINGS_MAX_HEADER_LIST_SIZE fails
// alone, before anything is sent: the peer would have ended the whole connection
// (x/net's framer does past twice its limit), failing every other stream on it.
func TestClientHeaderListLimit(t *testing.T) {
	var requests sync.Map
	_, dial := startScriptedPeer(t, func(p *scriptedPeer, id uint32) {
		requests.Store(id, true)
		p.headers(id, true, ":status", "204")
	}, http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: 4096})
	m := NewClient(dial)
	defer m.CloseIdle()
	get := func(hdr string) error {
		req, _ := http.NewRequest("GET", "http://peer/", nil)
		req.Header.Set("X-Big", hdr)
		resp, err := m.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get("small"); err != nil { // the peer's SETTINGS are in
		t.Fatal(err)
	}
	if err := get(strings.Repeat("b", 8192)); !errors.Is(err, ErrHeaderListTooLarge) {
		t.Fatalf("a request over the peer's header list limit: %v, want ErrHeaderListTooLarge", err)
	}
	if err := get("small again"); err != nil {
		t.Fatalf("the next request on the connection: %v", err)
	}
	n := 0
	requests.Range(func(_, _ any) bool { n++; return true })
	if n != 2 {
		t.Fatalf("the peer saw %d requests, want the 2 small ones", n)
	}
}

// A request whose response ended, on a connection the peer is closing (GOAWAY that
// covers the stream), finishes sending its body: the stream is then forgotten, which
// closes the connection. That close takes the write lock the body's writer held
// until it let go first (see the lock order in doc.go): the writer must not be left
// waiting for itself.
func TestClientBodyEndsAfterGoAway(t *testing.T) {
	_, dial := startScriptedPeer(t, func(p *scriptedPeer, id uint32) {
		p.write(func(fr *http2.Framer) error { return fr.WriteGoAway(id, http2.ErrCodeNo, nil) })
		p.headers(id, true, ":status", "200")
	})
	before := fuzzGoroutines(make([]byte, 1<<20), []string{"h2.(*clientStream).writeBody"})
	m := NewClient(dial)
	defer m.CloseIdle()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://peer/", pr)
	req.ContentLength = -1 // the headers go out at once, the body later
	resp, err := m.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	io.WriteString(pw, "late body")
	pw.Close()
	if stuck := fuzzLeaks(before, "h2.(*clientStream).writeBody"); stuck != "" {
		t.Fatalf("the body's writer did not return:\n%s", stuck)
	}
	if !m.Unused() {
		t.Fatal("the connection the peer closed is still held")
	}
}
