package transport

import (
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/weftmesh/weft/proxy/config"
)

// Opaque TCP between proxies (ALPN weft.tcp) starts with one header line naming the
// backend: "weft-dst: <ip:port>\n".
const tcpHeaderPrefix = "weft-dst: "

// TCPHeader is the line that starts a weft.tcp stream to dst.
func TCPHeader(dst netip.AddrPort) []byte {
	return fmt.Appendf(nil, "%s%s\n", tcpHeaderPrefix, dst)
}

// ReadTCPHeader reads the header line byte by byte so that no stream byte after it is
// consumed.
func ReadTCPHeader(r io.Reader) (netip.AddrPort, error) {
	var buf [80]byte
	n := 0
	for {
		if n == len(buf) {
			return netip.AddrPort{}, errors.New("weft.tcp header too long")
		}
		if _, err := io.ReadFull(r, buf[n:n+1]); err != nil {
			return netip.AddrPort{}, fmt.Errorf("read weft.tcp header: %w", err)
		}
		n++
		if buf[n-1] == '\n' {
			break
		}
	}
	v, ok := cutPrefixBytes(buf[:n], tcpHeaderPrefix)
	if !ok {
		return netip.AddrPort{}, errors.New("malformed weft.tcp header")
	}
	return config.ParseAddrPort(string(v[:len(v)-1]))
}

func cutPrefixBytes(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return nil, false
	}
	return b[len(prefix):], true
}
