package grpcwire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestParseCode(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want Code
		ok   bool
	}{
		{"ok", "0", OK, true},
		{"ok with a leading zero", "00", OK, true},
		{"unavailable", "14", Unavailable, true},
		{"beyond the spec's codes is kept", "42", Code(42), true},
		{"largest 32-bit", "4294967295", Code(4294967295), true},
		{"over 32 bits", "4294967296", 0, false},
		{"empty", "", 0, false},
		{"sign", "+1", 0, false},
		{"negative", "-1", 0, false},
		{"space", " 1", 0, false},
		{"letters", "OK", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseCode(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("ParseCode(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestCodeString(t *testing.T) {
	if got := Unauthenticated.String(); got != "Unauthenticated" {
		t.Errorf("16 is %q", got)
	}
	if got := Code(99).String(); got != "Code(99)" {
		t.Errorf("99 is %q", got)
	}
}

func TestFromHTTPStatus(t *testing.T) {
	cases := []struct {
		name string
		http int
		want Code
	}{
		{"bad request", 400, Internal},
		{"unauthorized", 401, Unauthenticated},
		{"forbidden", 403, PermissionDenied},
		{"not found", 404, Unimplemented},
		{"too many requests", 429, Unavailable},
		{"bad gateway", 502, Unavailable},
		{"unavailable", 503, Unavailable},
		{"gateway timeout", 504, Unavailable},
		{"teapot", 418, Unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromHTTPStatus(tc.http); got != tc.want {
				t.Fatalf("%d -> %v, want %v", tc.http, got, tc.want)
			}
		})
	}
}

func TestStatusFromHeader(t *testing.T) {
	cases := []struct {
		name     string
		status   string
		message  string
		wantOK   bool
		wantCode Code
		wantMsg  string
	}{
		{name: "absent", wantOK: false},
		{name: "ok", status: "0", wantOK: true, wantCode: OK},
		{name: "ok written 00", status: "00", wantOK: true, wantCode: OK},
		{name: "denied with an encoded message", status: "7", message: "namespace %C3%BCnmatched 100%25", wantOK: true, wantCode: PermissionDenied, wantMsg: "namespace ünmatched 100%"},
		{name: "a bad escape is kept", status: "14", message: "50%zz off", wantOK: true, wantCode: Unavailable, wantMsg: "50%zz off"},
		{name: "a truncated escape is kept", status: "14", message: "x%4", wantOK: true, wantCode: Unavailable, wantMsg: "x%4"},
		{name: "malformed is Unknown, never OK", status: "0x", wantOK: true, wantCode: Unknown, wantMsg: `malformed grpc-status "0x"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.status != "" {
				h.Set("grpc-status", tc.status)
			}
			if tc.message != "" {
				h.Set("grpc-message", tc.message)
			}
			st, ok := StatusFromHeader(h)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if !ok {
				return
			}
			if st.Code != tc.wantCode || st.Message != tc.wantMsg {
				t.Fatalf("got %v %q, want %v %q", st.Code, st.Message, tc.wantCode, tc.wantMsg)
			}
			if (st.Err() == nil) != (tc.wantCode == OK) {
				t.Fatalf("Err() = %v for code %v", st.Err(), st.Code)
			}
		})
	}
}

// TestResponseStatus: the trailers decide; a trailers-only answer carries the status in
// its headers.
func TestResponseStatus(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	cases := []struct {
		name    string
		header  http.Header
		trailer http.Header
		ok      bool
		code    Code
	}{
		{"trailers", hdr(), hdr("Grpc-Status", "13"), true, Internal},
		{"trailers-only", hdr("Grpc-Status", "16"), hdr(), true, Unauthenticated},
		{"trailers-only OK", hdr("Grpc-Status", "00"), nil, true, OK},
		{"trailers win", hdr("Grpc-Status", "0"), hdr("Grpc-Status", "14"), true, Unavailable},
		{"neither", hdr(), hdr(), false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, ok := ResponseStatus(&http.Response{Header: tc.header, Trailer: tc.trailer})
			if ok != tc.ok || (ok && st.Code != tc.code) {
				t.Fatalf("got %v, %v; want %v, %v", st, ok, tc.code, tc.ok)
			}
		})
	}
}

func TestEncodeMessageRoundTrip(t *testing.T) {
	for _, msg := range []string{"", "plain text", "100%", "ünïcode ✓", "line\nbreak", "\x00\xff"} {
		enc := EncodeMessage(msg)
		for i := 0; i < len(enc); i++ {
			if enc[i] < 0x20 || enc[i] > 0x7e {
				t.Fatalf("EncodeMessage(%q) = %q has byte %#x", msg, enc, enc[i])
			}
		}
		if got := DecodeMessage(enc); got != msg {
			t.Fatalf("round trip of %q: %q via %q", msg, got, enc)
		}
	}
}

func TestSetTrailersOnly(t *testing.T) {
	h := http.Header{}
	SetTrailersOnly(h, Unavailable, "no endpoints: 100% ejected")
	st, ok := StatusFromHeader(h)
	if !ok || st.Code != Unavailable || st.Message != "no endpoints: 100% ejected" || h.Get("Content-Type") != "application/grpc" {
		t.Fatalf("got %v %v, header %v", st, ok, h)
	}
}

func TestReader(t *testing.T) {
	two := AppendFrame(AppendFrame(nil, []byte("hello")), []byte{})
	cases := []struct {
		name    string
		body    []byte
		limit   int
		want    []string
		wantErr error
	}{
		{"two messages then a clean end", two, 16, []string{"hello", ""}, io.EOF},
		{"empty body", nil, 16, nil, io.EOF},
		{"end inside a prefix", []byte{0, 0, 0}, 16, nil, io.ErrUnexpectedEOF},
		{"end inside a message", []byte{0, 0, 0, 0, 4, 'a'}, 16, nil, io.ErrUnexpectedEOF},
		{"compressed", []byte{1, 0, 0, 0, 1, 'a'}, 16, nil, ErrCompressed},
		{"over the limit", []byte{0, 0, 0, 0, 17}, 16, nil, ErrTooLarge},
		{"at the limit", AppendFrame(nil, bytes.Repeat([]byte("x"), 16)), 16, []string{strings.Repeat("x", 16)}, io.EOF},
		{"4 GiB claimed", []byte{0, 0xff, 0xff, 0xff, 0xff}, 64 << 20, nil, ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// One byte per read: the reader must assemble prefixes and messages.
			r := NewReader(iotest.OneByteReader(bytes.NewReader(tc.body)), tc.limit)
			var got []string
			var err error
			for {
				var m []byte
				if m, err = r.Next(); err != nil {
					break
				}
				got = append(got, string(m))
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("end %v, want %v", err, tc.wantErr)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Fatalf("messages %q, want %q", got, tc.want)
			}
		})
	}
}

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestReaderAllocatesAsDataArrives: a prefix claiming 64 MiB with 3 bytes behind it
// must not cost 64 MiB.
func TestReaderAllocatesAsDataArrives(t *testing.T) {
	body := []byte{0, 0x04, 0, 0, 0, 1, 2, 3}
	var err error
	used := allocated(func() { _, err = NewReader(bytes.NewReader(body), 64<<20).Next() })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Next: %v, want io.ErrUnexpectedEOF", err)
	}
	if used > 1<<20 {
		t.Fatalf("a 64 MiB prefix with 3 bytes behind it allocated %d bytes", used)
	}
}

// TestReaderDropsLargeBuffers: the storage of a large message is not kept for the next.
func TestReaderDropsLargeBuffers(t *testing.T) {
	body := AppendFrame(AppendFrame(nil, make([]byte, 1<<20)), []byte("x"))
	r := NewReader(bytes.NewReader(body), 2<<20)
	if m, err := r.Next(); err != nil || len(m) != 1<<20 {
		t.Fatalf("first: %d bytes, %v", len(m), err)
	}
	if m, err := r.Next(); err != nil || string(m) != "x" {
		t.Fatalf("second: %q, %v", m, err)
	}
	if cap(r.buf) > retainMax {
		t.Fatalf("kept %d bytes of storage after a 1-byte message", cap(r.buf))
	}
}

func TestParseTimeout(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"30S", 30 * time.Second, true},
		{"100m", 100 * time.Millisecond, true},
		{"7u", 7 * time.Microsecond, true},
		{"0n", 0, true},
		{"99999999H saturates", time.Duration(math.MaxInt64), true},
		{"2562047H", 2562047 * time.Hour, true},
		{"123456789m", 0, false}, // 9 digits
		{"", 0, false},
		{"S", 0, false},
		{"10", 0, false},
		{"10s", 0, false}, // units are case-sensitive: s is not a unit
		{"-1S", 0, false},
		{"+1S", 0, false},
		{"1 S", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			in, _, _ := strings.Cut(tc.in, " saturates")
			got, ok := ParseTimeout(in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("ParseTimeout(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestFormatTimeout(t *testing.T) {
	cases := []struct {
		in   time.Duration
		want string
	}{
		{0, "0n"},
		{-time.Second, "0n"},
		{time.Nanosecond, "1n"},
		{99999999 * time.Nanosecond, "99999999n"},
		{100 * time.Millisecond, "100000u"},
		{100*time.Millisecond + 1, "100001u"}, // rounded up, never shorter
		{30 * time.Second, "30000000u"},
		{2 * time.Hour, "7200000m"},
		{1000 * time.Hour, "3600000S"}, {100000 * time.Hour, "6000000M"},
		{time.Duration(1<<63 - 1), "2562048H"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			got := FormatTimeout(tc.in)
			if got != tc.want {
				t.Fatalf("FormatTimeout(%v) = %q, want %q", tc.in, got, tc.want)
			}
			back, ok := ParseTimeout(got)
			if !ok || (tc.in > 0 && back < tc.in) {
				t.Fatalf("%q parses to %v, %v: shorter than %v", got, back, ok, tc.in)
			}
		})
	}
}

// TestMalformedStatusQuotesBoundedPrefix: a 29 KB grpc-status of invalid UTF-8 was
// quoted whole, four bytes of message per byte received (found by FuzzRecv).
func TestMalformedStatusQuotesBoundedPrefix(t *testing.T) {
	h := http.Header{}
	h.Set(HeaderStatus, strings.Repeat("\xff", 29<<10))
	st, ok := StatusFromHeader(h)
	if !ok || st.Code != Unknown {
		t.Fatalf("StatusFromHeader = %v, %v; want an Unknown status", st, ok)
	}
	if len(st.Message) > 256 {
		t.Fatalf("message is %d bytes, want a bounded prefix of the malformed value", len(st.Message))
	}
}
