package h2

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The weft.h2 frame-sequence fuzzers: the input is a program of frames (see
// fuzzFrames) a hostile peer sends to the real server (FuzzH2Server) or the real
// client (FuzzH2Client) over net.Pipe. Each input must end without a panic, with
// every goroutine of the connection and its streams gone within fuzzSettle, and
// with the heap not grown past fuzzHeapSlack: flow control and the header limits
// bound what any frames can make a connection hold.

const (
	fuzzSettle = 5 * time.Second
	// fuzzMaxSent bounds the DATA one input may send (repeat counts amplify it);
	// fuzzHeapSlack is what the heap may grow by while the connection is open: more
	// than the worst a peer within the windows can make either end hold (see the
	// arithmetic in server.go; the client's 16 MiB window in buffers that may have
	// doubled), less than what an end that buffers whatever it gets would hold.
	fuzzMaxSent   = 64 << 20
	fuzzHeapSlack = 44 << 20
)

// fuzzIn reads the program; past its end every read is zero.
type fuzzIn struct{ b []byte }

func (in *fuzzIn) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

func (in *fuzzIn) u16() int { return int(in.byte())<<8 | int(in.byte()) }

func (in *fuzzIn) u32() uint32 {
	switch v := in.byte(); v {
	case 0xff:
		return 1<<31 - 1
	case 0xfe:
		return 1 << 31
	case 0xfd:
		return 0
	default:
		return uint32(v)<<16 | uint32(in.u16())
	}
}

func (in *fuzzIn) bytes(n int) []byte {
	n = min(n, len(in.b))
	p := in.b[:n]
	in.b = in.b[n:]
	return p
}

// fuzzStreams are the stream ids a program names by index: the first requests'
// odd ids, then idle, even and zero ones.
var fuzzStreams = []uint32{1, 3, 5, 1, 7, 2, 0, 101, 1 << 30}

// fuzzFields are the header fields a program picks from, pseudo-header fields,
// malformed and connection-specific ones included.
var fuzzFields = []hpack.HeaderField{
	{Name: ":method", Value: "GET"}, {Name: ":method", Value: "POST"}, {Name: ":method", Value: "CONNECT"},
	{Name: ":scheme", Value: "http"}, {Name: ":path", Value: "/"}, {Name: ":path", Value: ""}, {Name: ":path", Value: "*"},
	{Name: ":authority", Value: "app"}, {Name: ":status", Value: "200"}, {Name: ":status", Value: "103"},
	{Name: ":status", Value: "100"}, {Name: ":status", Value: "204"}, {Name: ":status", Value: "x"},
	{Name: "content-length", Value: "0"}, {Name: "content-length", Value: "5"}, {Name: "content-length", Value: "-1"},
	{Name: "content-length", Value: "99999999999999999999"}, {Name: "te", Value: "trailers"}, {Name: "te", Value: "gzip"},
	{Name: "connection", Value: "close"}, {Name: "transfer-encoding", Value: "chunked"}, {Name: "trailer", Value: "x-t"},
	{Name: "x-t", Value: "v"}, {Name: "cookie", Value: "a=1"}, {Name: "Upper", Value: "x"}, {Name: ":unknown", Value: "x"},
	{Name: "weft-proto", Value: "h1"}, {Name: "weft-proto", Value: "h2"}, {Name: "host", Value: "h"},
	{Name: "expect", Value: "100-continue"}, {Name: "grpc-status", Value: "0"},
}

// fuzzFrames runs a program against fr: each step is an op byte and its operands.
// dst is the weft-dst value requests carry (server side).
func fuzzFrames(in *fuzzIn, fr *http2.Framer, enc *hpack.Encoder, encBuf *bytes.Buffer, dst string) error {
	sent := 0
	for len(in.b) > 0 {
		op := in.byte()
		id := fuzzStreams[int(in.byte())%len(fuzzStreams)]
		flags := in.byte()
		var err error
		switch op % 12 {
		case 0, 1: // a header block: request, response, or trailers
			encBuf.Reset()
			n := int(in.byte() % 12)
			if op%12 == 0 {
				// A well-formed request's fields first, unless the program drops them.
				if flags&0x80 == 0 {
					for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
						{Name: ":path", Value: "/"}, {Name: ":authority", Value: "app"}, {Name: "weft-dst", Value: dst}} {
						enc.WriteField(f)
					}
				}
			}
			for range n {
				enc.WriteField(fuzzFields[int(in.byte())%len(fuzzFields)])
			}
			if big := int(in.byte()); big > 200 {
				enc.WriteField(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("b", (big-200)*2048)})
			}
			block := encBuf.Bytes()
			split := len(block)
			if flags&0x40 != 0 {
				split = min(split, int(in.byte()))
			}
			p := http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:split], EndStream: flags&1 != 0, EndHeaders: split == len(block)}
			if flags&2 != 0 {
				p.PadLength = in.byte()
			}
			if flags&4 != 0 {
				p.Priority = http2.PriorityParam{StreamDep: fuzzStreams[int(in.byte())%len(fuzzStreams)], Weight: in.byte()}
			}
			if err = fr.WriteHeaders(p); err == nil && split < len(block) && flags&0x20 == 0 {
				err = fr.WriteContinuation(id, true, block[split:])
			}
		case 2: // DATA, repeated up to 255 times
			n := in.u16() % (20 << 10)
			pad := 0
			if flags&2 != 0 {
				pad = int(in.byte())
			}
			rep := 1 + int(in.byte())
			buf := make([]byte, n)
			for i := range rep {
				if sent += n; sent > fuzzMaxSent {
					break
				}
				end := flags&1 != 0 && i == rep-1
				if pad > 0 {
					err = fr.WriteDataPadded(id, end, buf, make([]byte, pad))
				} else {
					err = fr.WriteData(id, end, buf)
				}
				if err != nil {
					break
				}
			}
		case 3:
			err = fr.WriteWindowUpdate(id, in.u32())
		case 4:
			err = fr.WriteRSTStream(id, http2.ErrCode(in.byte()%14))
		case 5:
			if flags&1 != 0 {
				err = fr.WriteSettingsAck()
			} else {
				err = fr.WriteSettings(http2.Setting{ID: http2.SettingID(1 + in.byte()%6), Val: in.u32()})
			}
		case 6:
			err = fr.WritePing(flags&1 != 0, [8]byte{in.byte()})
		case 7:
			err = fr.WritePriority(id, http2.PriorityParam{StreamDep: fuzzStreams[int(in.byte())%len(fuzzStreams)], Weight: in.byte()})
		case 8:
			err = fr.WriteGoAway(id, http2.ErrCode(in.byte()%14), nil)
		case 9: // a raw frame: any type, flags and payload
			typ := in.byte()
			err = fr.WriteRawFrame(http2.FrameType(typ%11), http2.Flags(flags), id, in.bytes(int(in.byte())))
		case 10:
			err = fr.WriteContinuation(id, flags&1 != 0, in.bytes(int(in.byte())))
		case 11: // let handlers and callers run
			time.Sleep(time.Duration(in.byte()%20) * time.Millisecond)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fuzzSeeds are programs for both fuzzers: a request and its body, trailers, flow
// control violations, malformed blocks, stream-state errors.
var fuzzSeeds = append([][]byte{
	{0, 0, 0, 0, 0, 2, 0, 0, 0, 40, 0},           // request with body "0..." and END_STREAM
	{0, 0, 1, 0, 0},                              // request ended by its HEADERS
	{1, 0, 1, 1, 8, 0},                           // response 200 on stream 1
	{1, 0, 0, 2, 8, 13, 0, 2, 0, 1, 0, 5, 0},     // response, content-length 5, DATA 5
	{0, 0, 0, 0, 0, 2, 0, 0, 64, 0, 60},          // 16 KiB x 61: past the stream window
	{2, 0, 0, 64, 0, 60},                         // DATA on stream 1 before any HEADERS
	{0, 0, 0, 0, 0, 1, 0, 1, 2, 17, 22, 0},       // request, trailers
	{3, 6, 0, 0xff, 3, 0, 0, 0xff},               // WINDOW_UPDATE overflows
	{0, 0, 4, 0, 0, 0, 0},                        // HEADERS depending on itself
	{0, 2, 1, 0, 0, 0, 1, 1, 0, 0},               // stream 5 then 3: ids going backwards
	{0, 0, 0x41, 0, 0, 5, 10, 1, 0, 2, 0, 0},     // HEADERS without END_HEADERS, then DATA
	{5, 0, 0, 4, 0xff, 0, 0, 0, 0, 0, 0, 1, 0},   // SETTINGS_INITIAL_WINDOW_SIZE 2^31-1
	{9, 0, 0, 1, 3, 0x82, 0x84, 0x86, 9, 0, 0},   // raw HEADERS fragment, CONTINUATION
	{1, 0, 0, 3, 9, 9, 9, 0, 1, 0, 0, 1, 8, 0},   // 1xx, 1xx, 1xx then 200
	{1, 0, 0, 1, 20, 0, 8, 0, 0, 0, 3, 0, 0, 10}, // connection field; GOAWAY
}, floodSeed([]byte{0, 0, 0, 1, 22, 0}), floodSeed([]byte{1, 0, 0, 1, 8, 0}))

// floodSeed is a request (with x-t: v, for which the fuzz app reads nothing) or a
// response, then 60 MiB of DATA on its stream whatever the windows.
func floodSeed(headers []byte) []byte {
	p := headers
	for range 15 {
		p = append(p, 2, 0, 0, 0x40, 0, 255) // DATA 16 KiB x 256
	}
	return p
}

func fuzzAddSeeds(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
}

// fuzzGoroutines returns the stacks of the goroutines inside any of funcs, by
// goroutine header line ("goroutine 42 [select]:" without its state).
func fuzzGoroutines(buf []byte, funcs []string) map[string]string {
	n := runtime.Stack(buf, true)
	in := map[string]string{}
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		for _, fn := range funcs {
			if strings.Contains(g, fn) {
				id, _, _ := strings.Cut(g, " [")
				in[id] = g
				break
			}
		}
	}
	return in
}

// fuzzLeaks waits up to fuzzSettle for every goroutine inside funcs that did not
// exist in before (other tests' connections may still be winding down) to end, and
// returns the stacks of those that did not.
func fuzzLeaks(before map[string]string, funcs ...string) string {
	deadline := time.Now().Add(fuzzSettle)
	buf := make([]byte, 1<<20)
	for {
		var stuck []string
		for id, g := range fuzzGoroutines(buf, funcs) {
			if _, old := before[id]; !old {
				stuck = append(stuck, g)
			}
		}
		if len(stuck) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(stuck, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fuzzHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// fuzzApp is the app behind the fuzzed server: it reads what comes and answers.
func fuzzApp(f *testing.F) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-T") == "v" {
			// A slow app: it reads nothing until the request goes away.
			<-r.Context().Done()
			return
		}
		w.Header().Set("Trailer", "X-T")
		w.WriteHeader(http.StatusEarlyHints)
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "read %d", n)
		w.Header().Set("X-T", "done")
	})}
	go hs.Serve(ln)
	f.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

func FuzzH2Server(f *testing.F) {
	fuzzAddSeeds(f)
	app := fuzzApp(f)
	// The handler is a reverse proxy to the app, as the proxy's inbound side is:
	// request bodies stream out through an HTTP client, 1xx responses and trailers
	// come back, and a body that fails midway aborts the handler.
	appURL := &url.URL{Scheme: "http", Host: app}
	tr := &http.Transport{}
	f.Cleanup(tr.CloseIdleConnections)
	handler := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(appURL) },
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	s := &Server{}
	serverFuncs := []string{"h2.(*serverConn)", "h2.(*serverStream)", "h2.(*requestBody)"}
	f.Fuzz(func(t *testing.T, prog []byte) {
		base := fuzzHeap()
		before := fuzzGoroutines(make([]byte, 1<<20), serverFuncs)
		peer, conn := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			// http.ServerContextKey: see ServeConnOpts.Context.
			ctx := context.WithValue(context.Background(), http.ServerContextKey, &http.Server{})
			s.ServeConn(conn, ServeConnOpts{Context: ctx, Handler: handler, Proto: "weft.h2", Peer: "spiffe://fuzz/ns/a/sa/b"})
		}()
		go io.Copy(io.Discard, peer) // the server's answers
		peer.SetWriteDeadline(time.Now().Add(fuzzSettle))
		var encBuf bytes.Buffer
		enc := hpack.NewEncoder(&encBuf)
		fr := http2.NewFramer(peer, nil)
		fr.AllowIllegalWrites = true
		if _, err := io.WriteString(peer, http2.ClientPreface); err == nil && fr.WriteSettings() == nil {
			fuzzFrames(&fuzzIn{prog}, fr, enc, &encBuf, app)
		}
		if h := fuzzHeap(); h > base+fuzzHeapSlack {
			t.Fatalf("heap in use %d MiB with the connection open (%d MiB before it began)", h>>20, base>>20)
		}
		peer.Close()
		select {
		case <-done:
		case <-time.After(fuzzSettle):
			t.Fatalf("the server's connection did not end %s after its peer closed", fuzzSettle)
		}
		if stuck := fuzzLeaks(before, serverFuncs...); stuck != "" {
			t.Fatalf("goroutines still serving the closed connection after %s:\n%s", fuzzSettle, stuck)
		}
		if h := fuzzHeap(); h > base+fuzzHeapSlack {
			t.Fatalf("heap in use %d MiB after the connection ended (%d MiB before it began)", h>>20, base>>20)
		}
	})
}

func FuzzH2Client(f *testing.F) {
	fuzzAddSeeds(f)
	clientFuncs := []string{"h2.(*clientConn)", "h2.(*clientStream)", "h2.(*Client)"}
	f.Fuzz(func(t *testing.T, prog []byte) {
		base := fuzzHeap()
		before := fuzzGoroutines(make([]byte, 1<<20), clientFuncs)
		peer, conn := net.Pipe()
		// The peer reads the client's frames all along, and counts its requests.
		gotReqs := make(chan struct{}, 8)
		go func() {
			br := bufio.NewReader(peer)
			if _, err := io.ReadFull(br, make([]byte, len(http2.ClientPreface))); err != nil {
				return
			}
			rfr := http2.NewFramer(nil, br)
			for {
				f, err := rfr.ReadFrame()
				if err != nil {
					return
				}
				if f.Header().Type == http2.FrameHeaders {
					select {
					case gotReqs <- struct{}{}:
					default:
					}
				}
			}
		}()
		m := NewClient(func(context.Context) (net.Conn, error) { return nil, errors.New("fuzz: one connection only") })
		cc, err := newClientConn(m, conn)
		if err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		m.conns = append(m.conns, cc)
		m.mu.Unlock()
		var wg sync.WaitGroup
		opsDone := make(chan struct{})
		for i, body := range []string{"", "hello", ""} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				var rb io.Reader
				if body != "" {
					rb = strings.NewReader(body)
				}
				req, _ := http.NewRequestWithContext(ctx, "POST", "http://peer/"+fmt.Sprint(i), rb)
				if i == 2 {
					req.Method = "HEAD"
				}
				resp, err := m.RoundTrip(req)
				if err != nil {
					return
				}
				if i == 0 {
					<-opsDone // a caller that reads its body late
				}
				io.Copy(io.Discard, io.LimitReader(resp.Body, 2*fuzzMaxSent))
				resp.Body.Close()
			}()
			select { // in order: stream ids 1, 3, 5
			case <-gotReqs:
			case <-time.After(time.Second):
			}
		}
		var encBuf bytes.Buffer
		enc := hpack.NewEncoder(&encBuf)
		fr := http2.NewFramer(peer, nil)
		fr.AllowIllegalWrites = true
		peer.SetWriteDeadline(time.Now().Add(fuzzSettle))
		if fr.WriteSettings() == nil {
			fuzzFrames(&fuzzIn{prog}, fr, enc, &encBuf, "")
		}
		if h := fuzzHeap(); h > base+fuzzHeapSlack {
			t.Fatalf("heap in use %d MiB with the connection open (%d MiB before it began)", h>>20, base>>20)
		}
		close(opsDone)
		peer.Close()
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(fuzzSettle):
			t.Fatalf("requests still waiting %s after the peer closed the connection", fuzzSettle)
		}
		cc.close(errConnClosed)
		if stuck := fuzzLeaks(before, clientFuncs...); stuck != "" {
			t.Fatalf("goroutines still on the closed connection after %s:\n%s", fuzzSettle, stuck)
		}
		if h := fuzzHeap(); h > base+fuzzHeapSlack {
			t.Fatalf("heap in use %d MiB after the connection ended (%d MiB before it began)", h>>20, base>>20)
		}
	})
}
