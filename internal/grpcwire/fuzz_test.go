package grpcwire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// FuzzReader reads fuzzed message streams: nothing panics, every message fits in what
// was received and within the limit, every stream ends with io.EOF,
// io.ErrUnexpectedEOF, ErrCompressed or ErrTooLarge, messages read are the framing's
// content (re-framing them gives back the prefix of the input), and memory stays
// proportional to the bytes received, whatever the prefixes claim.
func FuzzReader(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, []byte("hello")), nil), uint32(16))
	f.Add([]byte{0, 0x04, 0, 0, 0, 1, 2, 3}, uint32(64<<20))
	f.Add([]byte{1, 0, 0, 0, 0}, uint32(16))
	f.Add([]byte{0, 0, 0, 0}, uint32(0))
	f.Fuzz(func(t *testing.T, body []byte, limit uint32) {
		limit %= 64 << 20
		var out []byte
		var err error
		used := allocated(func() {
			r := NewReader(bytes.NewReader(body), int(limit))
			for {
				var m []byte
				if m, err = r.Next(); err != nil {
					return
				}
				if len(m) > int(limit) {
					t.Fatalf("a %d-byte message over the limit %d", len(m), limit)
				}
				out = AppendFrame(out, m)
				if len(out) > len(body) {
					t.Fatalf("%d bytes of messages from %d bytes", len(out), len(body))
				}
			}
		})
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrCompressed) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("stream ended with %v", err)
		}
		if !bytes.HasPrefix(body, out) {
			t.Fatal("re-framed messages are not the input")
		}
		if errors.Is(err, io.EOF) && !bytes.Equal(body, out) {
			t.Fatal("a clean end before the input's end")
		}
		if limit := uint64(256<<10) + 4*uint64(len(body)); used > limit {
			t.Fatalf("reading %d bytes allocated %d", len(body), used)
		}
	})
}

// FuzzParseTimeout parses fuzzed grpc-timeout values: nothing panics, an accepted value
// is never negative and has the specification's shape, and formatting it and parsing
// again never shortens it.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"1H", "99999999H", "100m", "0n", "10s", "-1S", "123456789n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseTimeout(s)
		if !ok {
			return
		}
		if d < 0 {
			t.Fatalf("%q is %v", s, d)
		}
		if len(s) < 2 || len(s) > 9 {
			t.Fatalf("%q accepted", s)
		}
		back, ok := ParseTimeout(FormatTimeout(d))
		if !ok || back < d {
			t.Fatalf("%q = %v formats to %q = %v", s, d, FormatTimeout(d), back)
		}
		if back-d > time.Hour {
			t.Fatalf("%q = %v came back %v", s, d, back)
		}
	})
}
