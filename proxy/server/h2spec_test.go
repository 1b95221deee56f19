package server_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/summerwind/h2spec/config"
	"github.com/summerwind/h2spec/generic"
	h2spechpack "github.com/summerwind/h2spec/hpack"
	h2spechttp2 "github.com/summerwind/h2spec/http2"
	"github.com/summerwind/h2spec/spec"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2specExempt are the h2spec cases (by their ID, "http2/<section>/<n>") that cannot
// pass against a target by design, with the reason (also in docs/proxy.md, "HTTP/2
// conformance"). A case listed here that passes is fine; one that fails and is not
// listed fails the test.
var h2specExempt = map[string]map[string]string{
	"weft.h2": {
		"http2/4.2/3": frameSizeExempt,
	},
	"h2c": {
		"http2/4.2/3": frameSizeExempt,
		// The app-facing ports detect the protocol: bytes that are not the
		// HTTP/2 preface are HTTP/1.1 (here answered 400) or opaque TCP, so an
		// invalid preface is never an HTTP/2 connection error.
		"http2/3.5/2": "the app-facing ports detect the protocol; a connection that does not start with the HTTP/2 preface is served as HTTP/1.1 or relayed as opaque TCP",
	},
}

const (
	frameSizeExempt = "the server advertises SETTINGS_MAX_FRAME_SIZE 1 MiB; h2spec's 20 KB HEADERS frame is legal under it (h2spec assumes the default 16,384)"
)

// TestH2spec runs the h2spec conformance suite (github.com/summerwind/h2spec, every
// generic, http2 and hpack case, strict ones included) against
//   - the weft.h2 server, through a shim that takes h2spec's plaintext connections,
//     opens mTLS with a client certificate and ALPN weft.h2, and adds the weft-dst
//     field to each request's first header block (re-encoding it with HPACK);
//   - the proxy's app-facing h2c ports: the outbound listener and the plaintext
//     inbound listener.
//
// Behind each is an app answering every request at once with a 16 KiB body. It
// prints the passed/failed/exempt counts (go test -v -run TestH2spec shows them).
func TestH2spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec takes about a minute")
	}
	app := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(bytes.Repeat([]byte("h2spec "), 16<<10/7))
		w.(http.Flusher).Flush()
		io.Copy(io.Discard, r.Body)
	}))
	m := newMeshH2(t)
	targets := []struct{ short, name, kind, addr string }{
		{"weft.h2", "weft.h2 server (mTLS shim)", "weft.h2", startH2specShim(t, m, app)},
		{"outbound", "outbound h2c", "h2c", m.p.outbound(app)},
		{"inbound", "inbound h2c (plaintext)", "h2c", m.p.inboundPlain(app)},
	}
	for _, tg := range targets {
		t.Run(tg.short, func(t *testing.T) {
			passed, failed, exempt := runH2spec(t, tg.addr, h2specExempt[tg.kind])
			line := fmt.Sprintf("h2spec %s: %d passed, %d failed, %d exempt", tg.name, passed, len(failed), exempt)
			t.Log(line)
			fmt.Println(line)
			for _, f := range failed {
				t.Error(f)
			}
		})
	}
}

// runH2spec runs every h2spec case against addr; failed describes each unexpected
// failure.
func runH2spec(t *testing.T, addr string, exempt map[string]string) (passed int, failed []string, exempted int) {
	host, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	c := &config.Config{Host: host, Port: p, Path: "/", Timeout: 2 * time.Second, MaxHeaderLen: 4000, Strict: true}
	groups := []*spec.TestGroup{generic.Spec(), h2spechttp2.Spec(), h2spechpack.Spec()}
	// h2spec reports on stdout as it goes; keep that out of the test's output.
	out, err := os.CreateTemp(t.TempDir(), "h2spec")
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = out
	func() {
		defer func() { os.Stdout = stdout }()
		for _, g := range groups {
			g.Test(c)
		}
	}()
	out.Close()
	var walk func(g *spec.TestGroup)
	walk = func(g *spec.TestGroup) {
		for i, tc := range append(append([]*spec.TestCase(nil), g.Tests...), g.StrictTests...) {
			if tc.Result == nil {
				continue
			}
			id := fmt.Sprintf("%s/%d", g.ID(), i+1)
			switch {
			case !tc.Result.Failed && !tc.Result.Skipped:
				passed++
			case exempt[id] != "":
				exempted++
			default:
				msg := fmt.Sprintf("h2spec %s %q failed: %v", id, tc.Desc, tc.Result.Error)
				if tc.Result.Skipped {
					msg = fmt.Sprintf("h2spec %s %q skipped: %v", id, tc.Desc, tc.Result.Error)
				}
				failed = append(failed, msg)
			}
		}
		for _, sub := range g.Groups {
			walk(sub)
		}
	}
	for _, g := range groups {
		walk(g)
	}
	sort.Strings(failed)
	return passed, failed, exempted
}

// startH2specShim listens for h2spec's plaintext HTTP/2 connections and carries each
// over mTLS with ALPN weft.h2 to the weft.h2 server, adding what weft.h2 needs: a
// weft-dst field naming the app in the first header block of each stream. Frames
// pass byte for byte, except those header blocks, which are decoded and encoded
// again (HPACK state is per connection, so every block the shim decodes it also
// re-encodes). A block the shim cannot decode, or one interrupted by another frame,
// passes as it came: the server must reject it as it would have.
func startH2specShim(t *testing.T, m *meshH2, app string) string {
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				s, err := (&net.Dialer{Timeout: 5 * time.Second}).Dial("tcp", m.p.inbound)
				if err != nil {
					return
				}
				tc := tls.Client(s, m.clientTLS)
				defer tc.Close()
				if err := tc.Handshake(); err != nil {
					return
				}
				go func() {
					io.Copy(c, tc)
					c.(*net.TCPConn).CloseWrite()
				}()
				shimRequests(c, tc, app)
			}()
		}
	}()
	return ln.Addr().String()
}

// shimRequests copies h2spec's frames from c to w, adding weft-dst (see
// startH2specShim).
func shimRequests(c io.Reader, w io.Writer, app string) {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	w.Write(preface)
	dec := hpack.NewDecoder(4096, nil)
	dec.SetMaxStringLength(1 << 20)
	var encBuf bytes.Buffer
	enc := hpack.NewEncoder(&encBuf)
	seen := map[uint32]bool{}
	var pending [][]byte // a HEADERS frame and CONTINUATIONs waiting for END_HEADERS
	flushRaw := func() {
		for _, f := range pending {
			w.Write(f)
		}
		pending = nil
	}
	for {
		hdr := make([]byte, 9)
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		frame := make([]byte, 9+n)
		copy(frame, hdr)
		if _, err := io.ReadFull(c, frame[9:]); err != nil {
			return
		}
		typ, flags := http2.FrameType(hdr[3]), http2.Flags(hdr[4])
		id := binary.BigEndian.Uint32(hdr[5:9]) & (1<<31 - 1)
		switch {
		case typ == http2.FrameHeaders && len(pending) == 0:
			pending = [][]byte{frame}
		case typ == http2.FrameContinuation && len(pending) > 0 && id == streamOf(pending[0]):
			pending = append(pending, frame)
		default:
			flushRaw()
			w.Write(frame)
			continue
		}
		if !flags.Has(http2.FlagHeadersEndHeaders) {
			continue
		}
		out, ok := rewriteBlock(pending, dec, enc, &encBuf, !seen[id], app)
		seen[id] = true
		if !ok {
			flushRaw()
			continue
		}
		pending = nil
		w.Write(out)
	}
}

func streamOf(frame []byte) uint32 { return binary.BigEndian.Uint32(frame[5:9]) & (1<<31 - 1) }

// rewriteBlock decodes a complete header block (HEADERS + CONTINUATION frames),
// adds weft-dst when first is set, and encodes it into frames of the same kinds:
// HEADERS keeps its END_STREAM flag and priority (padding is dropped), and the block
// is split at the size of the largest frame h2spec sent, so a frame over the
// server's limit stays over it.
func rewriteBlock(frames [][]byte, dec *hpack.Decoder, enc *hpack.Encoder, encBuf *bytes.Buffer, first bool, app string) ([]byte, bool) {
	h := frames[0]
	flags := http2.Flags(h[4])
	payload := h[9:]
	var prio []byte
	if flags.Has(http2.FlagHeadersPadded) {
		if len(payload) < 1 {
			return nil, false
		}
		pad := int(payload[0])
		payload = payload[1:]
		if pad > len(payload) {
			return nil, false
		}
		payload = payload[:len(payload)-pad]
	}
	if flags.Has(http2.FlagHeadersPriority) {
		if len(payload) < 5 {
			return nil, false
		}
		prio, payload = payload[:5], payload[5:]
	}
	block := append([]byte(nil), payload...)
	largest := len(h) - 9
	for _, f := range frames[1:] {
		block = append(block, f[9:]...)
		largest = max(largest, len(f)-9)
	}
	fields, err := dec.DecodeFull(block)
	if err != nil {
		return nil, false
	}
	if first {
		fields = append(fields, hpack.HeaderField{Name: "weft-dst", Value: app})
	}
	encBuf.Reset()
	for _, f := range fields {
		enc.WriteField(f)
	}
	newBlock := encBuf.Bytes()
	chunk := max(16384, largest)
	var out bytes.Buffer
	id := streamOf(h)
	writeFrame := func(typ http2.FrameType, fl http2.Flags, p ...[]byte) {
		n := 0
		for _, b := range p {
			n += len(b)
		}
		var hdr [9]byte
		hdr[0], hdr[1], hdr[2] = byte(n>>16), byte(n>>8), byte(n)
		hdr[3], hdr[4] = byte(typ), byte(fl)
		binary.BigEndian.PutUint32(hdr[5:], id)
		out.Write(hdr[:])
		for _, b := range p {
			out.Write(b)
		}
	}
	firstLen := min(len(newBlock), chunk-len(prio))
	fl := flags &^ (http2.FlagHeadersPadded | http2.FlagHeadersEndHeaders)
	if firstLen == len(newBlock) {
		fl |= http2.FlagHeadersEndHeaders
	}
	writeFrame(http2.FrameHeaders, fl, prio, newBlock[:firstLen])
	rest := newBlock[firstLen:]
	for len(rest) > 0 {
		n := min(len(rest), chunk)
		var cf http2.Flags
		if n == len(rest) {
			cf = http2.FlagContinuationEndHeaders
		}
		writeFrame(http2.FrameContinuation, cf, rest[:n])
		rest = rest[n:]
	}
	return out.Bytes(), true
}
