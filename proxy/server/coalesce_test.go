package server

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// frame encodes one HTTP/2 frame with Go's framer.
func frame(t *testing.T, typ http2.FrameType, flags http2.Flags, stream uint32, payload []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	if err := fr.WriteRawFrame(typ, flags, stream, payload); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCoalesceTrack(t *testing.T) {
	hdrs := func(flags http2.Flags) []byte { return frame(t, http2.FrameHeaders, flags, 1, []byte("hpack")) }
	data := frame(t, http2.FrameData, http2.FlagDataEndStream, 1, bytes.Repeat([]byte("d"), 300))
	settings := frame(t, http2.FrameSettings, 0, 0, nil)
	// Every case's writes follow the client preface, as on a real connection.
	cases := []struct {
		name   string
		writes [][]byte
		hold   []bool // per write
	}{
		{name: "headers with a body to follow are held", writes: [][]byte{hdrs(http2.FlagHeadersEndHeaders), data}, hold: []bool{true, false}},
		{name: "headers ending the stream go out", writes: [][]byte{hdrs(http2.FlagHeadersEndHeaders | http2.FlagHeadersEndStream)}, hold: []bool{false}},
		{name: "headers continued in CONTINUATION go out", writes: [][]byte{hdrs(0)}, hold: []bool{false}},
		{name: "other frames go out", writes: [][]byte{settings, data}, hold: []bool{false, false}},
		{name: "data then headers in one write is held", writes: [][]byte{append(append([]byte{}, data...), hdrs(http2.FlagHeadersEndHeaders)...)}, hold: []bool{true}},
		{
			name:   "frame header split across writes",
			writes: [][]byte{hdrs(http2.FlagHeadersEndHeaders)[:4], hdrs(http2.FlagHeadersEndHeaders)[4:], data[:100], data[100:]},
			hold:   []bool{false, true, false, false},
		},
		{
			name:   "a frame after a split preface",
			writes: [][]byte{[]byte(http2.ClientPreface)[:10], append([]byte(http2.ClientPreface)[10:], hdrs(http2.FlagHeadersEndHeaders)...)},
			hold:   []bool{false, true},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCoalescingConn(nil)
			if tc.name != "a frame after a split preface" && c.track([]byte(http2.ClientPreface)) {
				t.Fatal("the preface was held")
			}
			for i, w := range tc.writes {
				if got := c.track(w); got != tc.hold[i] {
					t.Fatalf("write %d: hold = %v, want %v", i, got, tc.hold[i])
				}
			}
		})
	}
}

// writeCounter counts the writes that reach the socket.
type writeCounter struct {
	net.Conn
	n atomic.Int32
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.n.Add(1)
	return w.Conn.Write(p)
}

func tcpPairT(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-ch
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestCoalescingConnWrites(t *testing.T) {
	hdrs := frame(t, http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, []byte("hpack"))
	hdrsEnd := frame(t, http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 3, []byte("hpack"))
	data := frame(t, http2.FrameData, http2.FlagDataEndStream, 1, []byte("body"))
	windowUpdate := func(stream, incr uint32) []byte {
		return frame(t, http2.FrameWindowUpdate, 0, stream, []byte{byte(incr >> 24), byte(incr >> 16), byte(incr >> 8), byte(incr)})
	}
	connWU, streamWU := windowUpdate(0, 4096), windowUpdate(1, 4096)
	settingsAndWU := append(frame(t, http2.FrameSettings, 0, 0, nil), windowUpdate(0, 1<<30)...)
	preface := []byte(http2.ClientPreface)
	cases := []struct {
		name       string
		writes     [][]byte      // after the client preface, which is one socket write
		close      bool          // close after the writes
		delay      time.Duration // how long headers are held
		wantWrites int32         // writes on the socket
	}{
		// The hold is an hour where the timer must not be what sends the frame: with the
		// real 100 µs a loaded machine can deschedule the test between its two writes, the
		// timer then (correctly) sends the headers alone, and the count says nothing about
		// coalescing. An hour cannot pass, so one write here means the body joined the
		// held headers, and two writes still mean coalescing is broken.
		{name: "headers and body in one write", writes: [][]byte{hdrs, data}, delay: time.Hour, wantWrites: 2},
		{name: "headers ending the stream at once", writes: [][]byte{hdrsEnd}, delay: time.Hour, wantWrites: 2},
		// The real delay: the peer's read (5 s deadline) only completes if the timer fires.
		{name: "held headers go out on the timer", writes: [][]byte{hdrs}, delay: coalesceDelay, wantWrites: 2},
		{name: "held headers go out on close", writes: [][]byte{hdrs}, close: true, delay: time.Hour, wantWrites: 2},
		// Connection-level WINDOW_UPDATEs from the client side wait for the next write.
		{name: "connection window update joins the next request", writes: [][]byte{connWU, connWU, hdrsEnd}, delay: time.Hour, wantWrites: 2},
		{name: "held window update goes out on close", writes: [][]byte{connWU}, close: true, delay: time.Hour, wantWrites: 2},
		{name: "stream window update goes out at once", writes: [][]byte{streamWU}, delay: time.Hour, wantWrites: 2},
		{name: "the initial settings and window go out at once", writes: [][]byte{settingsAndWU}, delay: time.Hour, wantWrites: 2},
		{name: "a window update past the held bound goes out at once", writes: [][]byte{windowUpdate(0, maxHeldCredit+1)}, delay: time.Hour, wantWrites: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPairT(t)
			wc := &writeCounter{Conn: a}
			c := newCoalescingConn(wc)
			c.delay = tc.delay
			var want []byte
			for _, w := range append([][]byte{preface}, tc.writes...) {
				if n, err := c.Write(w); n != len(w) || err != nil {
					t.Fatalf("write: %d, %v", n, err)
				}
				want = append(want, w...)
			}
			if tc.close {
				c.Close()
			}
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len(want))
			if _, err := io.ReadFull(b, got); err != nil {
				t.Fatalf("peer read: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("peer got %x, want %x", got, want)
			}
			if n := wc.n.Load(); n != tc.wantWrites {
				t.Fatalf("%d socket writes, want %d", n, tc.wantWrites)
			}
		})
	}
}

// A failed delayed write fails the next write and closes the connection.
func TestCoalescingConnDelayedError(t *testing.T) {
	a, _ := tcpPairT(t)
	c := newCoalescingConn(a)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	hdrs := frame(t, http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, []byte("hpack"))
	if _, err := c.Write(hdrs); err != nil {
		t.Fatalf("held write failed at once: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Write(frame(t, http2.FrameSettings, 0, 0, nil))
		if err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writes kept succeeding on a closed connection")
		}
		time.Sleep(time.Millisecond)
	}
}
