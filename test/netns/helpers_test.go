package netns

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestCleanupStale(t *testing.T) {
	RequireRoot(t)
	// A pid that surely belongs to no process: one that has just exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "30")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })

	tests := []struct {
		name     string
		ns       string
		wantKept bool
	}{
		{name: "creator gone: removed", ns: fmt.Sprintf("%s%d-stale", Prefix, dead.Process.Pid), wantKept: false},
		{name: "creator alive: kept", ns: fmt.Sprintf("%s%d-busy", Prefix, live.Process.Pid), wantKept: true},
		{name: "not ours: kept", ns: fmt.Sprintf("weftother-%d", dead.Process.Pid), wantKept: true},
	}
	for _, tt := range tests {
		if err := Run(context.Background(), "ip", "netns", "add", tt.ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", tt.ns).Run() })
	}
	if err := CleanupStale(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := os.Stat(filepath.Join(runDir, tt.ns))
			if kept := err == nil; kept != tt.wantKept {
				t.Fatalf("%s kept = %v, want %v", tt.ns, kept, tt.wantKept)
			}
		})
	}
}

// frame builds an Ethernet frame carrying one TCP segment.
func frame(src, dst netip.AddrPort, payload []byte, pad int) []byte {
	tcp := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	tcp[12] = 5 << 4
	tcp = append(tcp, payload...)
	eth := make([]byte, 14)
	var ip []byte
	if src.Addr().Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		ip[9] = 6
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
	} else {
		binary.BigEndian.PutUint16(eth[12:], 0x86DD)
		ip = make([]byte, 40)
		ip[0] = 6 << 4
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6] = 6
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	f := append(append(eth, ip...), tcp...)
	// Ethernet pads short frames; the IP length must win over the frame length.
	return append(f, make([]byte, pad)...)
}

func TestParseFrame(t *testing.T) {
	a4, b4 := netip.MustParseAddrPort("10.199.1.1:40000"), netip.MustParseAddrPort("10.199.1.2:4143")
	a6, b6 := netip.MustParseAddrPort("[fd00:199::1]:40000"), netip.MustParseAddrPort("[fd00:199::2]:4143")
	tests := []struct {
		name    string
		frame   []byte
		wantOK  bool
		wantSrc netip.AddrPort
		want    string
	}{
		{name: "ipv4 with payload", frame: frame(a4, b4, []byte("hello"), 0), wantOK: true, wantSrc: a4, want: "hello"},
		{name: "ipv4 padded frame", frame: frame(a4, b4, []byte("hi"), 10), wantOK: true, wantSrc: a4, want: "hi"},
		{name: "ipv6 with payload", frame: frame(a6, b6, []byte("hello6"), 0), wantOK: true, wantSrc: a6, want: "hello6"},
		{name: "bare ack", frame: frame(b4, a4, nil, 6), wantOK: true, wantSrc: b4, want: ""},
		{name: "arp is ignored", frame: append(make([]byte, 12), 0x08, 0x06, 0, 1), wantOK: false},
		{name: "truncated", frame: frame(a4, b4, []byte("x"), 0)[:30], wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seg, ok := parseFrame(tt.frame)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if seg.Src != tt.wantSrc || string(seg.Payload) != tt.want {
				t.Fatalf("got %v %q, want %v %q", seg.Src, seg.Payload, tt.wantSrc, tt.want)
			}
		})
	}
}

func TestWire(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.199.1.1:40000"), netip.MustParseAddrPort("10.199.1.2:4143")
	clientHello := []byte{22, 3, 1, 0, 200, 1}
	appData := []byte{23, 3, 3, 0, 30, 9, 9}
	tests := []struct {
		name          string
		segs          []Segment
		wantHandshake int
		wantAppData   int
		wantSecret    bool
	}{
		{name: "tls connection", segs: []Segment{{a, b, clientHello}, {b, a, []byte{22, 3, 3, 0, 90}}, {a, b, appData}},
			wantHandshake: 2, wantAppData: 1},
		{name: "plaintext http", segs: []Segment{{a, b, []byte("GET /secret HTTP/1.1\r\n")}}, wantSecret: true},
		{name: "tls-like bytes inside plaintext do not count", segs: []Segment{{a, b, append([]byte("x"), appData...)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := Wire{Segments: tt.segs}
			if got := w.TLSHandshakes(); got != tt.wantHandshake {
				t.Errorf("handshakes = %d, want %d", got, tt.wantHandshake)
			}
			if got := w.TLSApplicationData(); got != tt.wantAppData {
				t.Errorf("application data = %d, want %d", got, tt.wantAppData)
			}
			if got := w.Contains([]byte("secret")); got != tt.wantSecret {
				t.Errorf("contains secret = %v, want %v", got, tt.wantSecret)
			}
			if got := w.Between(4143).PayloadBytes(); got != w.PayloadBytes() {
				t.Errorf("Between(4143) lost bytes: %d of %d", got, w.PayloadBytes())
			}
			if got := w.Between(1).PayloadBytes(); got != 0 {
				t.Errorf("Between(1) kept %d bytes", got)
			}
		})
	}
}

func TestTLSFlows(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.199.1.1:40000"), netip.MustParseAddrPort("10.199.1.2:4143")
	hello := append([]byte{22, 3, 1, 0, 4}, 1, 0, 0, 0)
	server := append([]byte{22, 3, 3, 0, 2}, 2, 0)
	data := append([]byte{23, 3, 3, 0, 3}, 7, 7, 7)
	tests := []struct {
		name        string
		segs        []Segment
		wantChecked int
		wantErr     bool
	}{
		{name: "both directions are records", segs: []Segment{{a, b, hello}, {b, a, server}, {a, b, data}, {b, a, data}}, wantChecked: 2},
		{name: "record split across segments", segs: []Segment{{a, b, hello[:3]}, {a, b, append(hello[3:], data...)}}, wantChecked: 1},
		{name: "capture ends inside a record", segs: []Segment{{a, b, append(hello, data[:6]...)}}, wantChecked: 1},
		{name: "plaintext after the handshake", segs: []Segment{{a, b, append(hello, []byte("GET / HTTP/1.1\r\n")...)}}, wantChecked: 1, wantErr: true},
		{name: "mid-stream flow is skipped", segs: []Segment{{a, b, data}, {a, b, []byte("whatever")}}, wantChecked: 0},
		{name: "plaintext flow is skipped", segs: []Segment{{a, b, []byte("GET / HTTP/1.1\r\n")}}, wantChecked: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Wire{Segments: tt.segs}.TLSFlows()
			if n != tt.wantChecked || (err != nil) != tt.wantErr {
				t.Fatalf("TLSFlows = %d, %v; want %d, error %v", n, err, tt.wantChecked, tt.wantErr)
			}
		})
	}
}
