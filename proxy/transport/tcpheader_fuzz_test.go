package transport

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// FuzzReadTCPHeader feeds the weft.tcp header parser, the first thing a peer's
// opaque stream reaches, arbitrary bytes. It must not panic, must never read past
// the header line (the bytes after it are the application's stream) nor more than
// its 80-byte bound, and what it accepts must be a usable ip:port that the client
// side's TCPHeader writes back to the same line.
func FuzzReadTCPHeader(f *testing.F) {
	for _, s := range []string{
		"weft-dst: 10.0.0.1:8080\n",
		"weft-dst: [fd00::1]:443\nGET / HTTP/1.1\r\n",
		"weft-dst: 127.0.0.1:4191\n",
		"weft-dst: [::ffff:127.0.0.1]:80\n",
		"weft-dst: [fe80::1%eth0]:80\n",
		"weft-dst: 10.0.0.1:0\n",
		"weft-dst: 10.0.0.1:65536\n",
		"weft-dst: 10.0.0.1:80",
		"weft-dst:10.0.0.1:80\n",
		"WEFT-DST: 10.0.0.1:80\n",
		"weft-dst: 10.0.0.1:80\r\n",
		"\n",
		strings.Repeat("a", 200),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		dst, err := ReadTCPHeader(r)
		consumed := len(in) - r.Len()
		if consumed > 80 {
			t.Fatalf("read %d bytes, more than the header's 80-byte bound", consumed)
		}
		if err != nil {
			return
		}
		line := in[:consumed]
		if !bytes.HasPrefix(line, []byte(tcpHeaderPrefix)) || line[len(line)-1] != '\n' || bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("accepted %q: not exactly one header line", line)
		}
		if !dst.IsValid() || dst.Port() == 0 || dst.Addr().Is4In6() {
			t.Fatalf("accepted %q as %v: not a usable, unmapped ip:port", line, dst)
		}
		again, err := ReadTCPHeader(bytes.NewReader(TCPHeader(dst)))
		if err != nil || again != dst {
			t.Fatalf("TCPHeader(%v) reads back as %v, %v", dst, again, err)
		}
	})
}

// TestTCPHeaderRoundTrip: every address the client side writes, the server side
// reads back, byte-exact, leaving the stream after it untouched.
func TestTCPHeaderRoundTrip(t *testing.T) {
	for _, s := range []string{"10.1.2.3:80", "[fd00::1]:8443", "192.0.2.2:65535"} {
		dst := netip.MustParseAddrPort(s)
		r := bytes.NewReader(append(TCPHeader(dst), "rest"...))
		got, err := ReadTCPHeader(r)
		if err != nil || got != dst || r.Len() != len("rest") {
			t.Fatalf("%s: got %v, %v, %d bytes left", s, got, err, r.Len())
		}
	}
}
