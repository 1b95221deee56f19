package netns

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Segment is the payload of one captured TCP packet.
type Segment struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// Capture reads every frame crossing one interface through an AF_PACKET socket: the
// wire as the kernel sees it, with no library in between.
type Capture struct {
	fd   int
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	segs []Segment
	err  error
}

// StartCapture starts capturing TCP segments (IPv4 and IPv6) on ifName inside the
// namespace. Call Stop to end it and get what was seen.
func (n *NS) StartCapture(ifName string) (*Capture, error) {
	c := &Capture{fd: -1, stop: make(chan struct{}), done: make(chan struct{})}
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return fmt.Errorf("find %s: %w", ifName, err)
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to %s: %w", ifName, err)
		}
		// A short receive timeout lets the reader notice Stop without closing the
		// descriptor under a blocked read.
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return fmt.Errorf("set receive timeout: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, err
	}
	go c.read()
	return c, nil
}

func (c *Capture) read() {
	defer close(c.done)
	buf := make([]byte, 256*1024) // GRO can hand over frames far above the MTU
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.mu.Lock()
			c.err = fmt.Errorf("read packet socket: %w", err)
			c.mu.Unlock()
			return
		}
		if seg, ok := parseFrame(buf[:n]); ok {
			c.mu.Lock()
			c.segs = append(c.segs, seg)
			c.mu.Unlock()
		}
	}
}

// Stop ends the capture and returns the TCP segments seen, in order. Segments without
// payload (bare ACKs, SYNs) are included with an empty Payload.
func (c *Capture) Stop() ([]Segment, error) {
	close(c.stop)
	<-c.done
	unix.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.segs, c.err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// parseFrame extracts a TCP segment from an Ethernet frame.
func parseFrame(f []byte) (Segment, bool) {
	if len(f) < 14 {
		return Segment{}, false
	}
	etype := binary.BigEndian.Uint16(f[12:14])
	p := f[14:]
	var src, dst netip.Addr
	var tcp []byte
	switch etype {
	case 0x0800: // IPv4
		if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_TCP {
			return Segment{}, false
		}
		ihl := int(p[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(p[2:4]))
		if total > len(p) || total < ihl {
			total = len(p)
		}
		src, _ = netip.AddrFromSlice(p[12:16])
		dst, _ = netip.AddrFromSlice(p[16:20])
		tcp = p[ihl:total]
	case 0x86DD: // IPv6, without extension headers (the kernel adds none here)
		if len(p) < 40 || p[6] != unix.IPPROTO_TCP {
			return Segment{}, false
		}
		plen := int(binary.BigEndian.Uint16(p[4:6]))
		if 40+plen > len(p) {
			plen = len(p) - 40
		}
		src, _ = netip.AddrFromSlice(p[8:24])
		dst, _ = netip.AddrFromSlice(p[24:40])
		tcp = p[40 : 40+plen]
	default:
		return Segment{}, false
	}
	if len(tcp) < 20 {
		return Segment{}, false
	}
	off := int(tcp[12]>>4) * 4
	if off > len(tcp) {
		return Segment{}, false
	}
	return Segment{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:2])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:4])),
		Payload: bytes.Clone(tcp[off:]),
	}, true
}

// Wire summarises a capture for assertions.
type Wire struct {
	Segments []Segment
}

// Bytes returns all payload bytes, concatenated in capture order.
func (w Wire) Bytes() []byte {
	var b []byte
	for _, s := range w.Segments {
		b = append(b, s.Payload...)
	}
	return b
}

// Contains reports whether any single segment's payload contains needle. Needles are
// short markers, which TCP never splits in practice at these sizes; Bytes covers the
// rest.
func (w Wire) Contains(needle []byte) bool {
	if bytes.Contains(w.Bytes(), needle) {
		return true
	}
	for _, s := range w.Segments {
		if bytes.Contains(s.Payload, needle) {
			return true
		}
	}
	return false
}

// TLSHandshakes counts segments that start with a TLS handshake record header
// (content type 22, legacy version 3.1 or 3.3): the ClientHello and ServerHello of
// a TLS connection (RFC 8446 §5.1).
func (w Wire) TLSHandshakes() int {
	n := 0
	for _, s := range w.Segments {
		p := s.Payload
		if len(p) >= 5 && p[0] == 22 && p[1] == 3 && (p[2] == 1 || p[2] == 3) {
			n++
		}
	}
	return n
}

// TLSApplicationData counts segments that start with a TLS 1.3 application-data record
// header (content type 23, legacy version 3.3).
func (w Wire) TLSApplicationData() int {
	n := 0
	for _, s := range w.Segments {
		p := s.Payload
		if len(p) >= 5 && p[0] == 23 && p[1] == 3 && p[2] == 3 {
			n++
		}
	}
	return n
}

// Between keeps the segments of connections to or from port, both directions.
func (w Wire) Between(port uint16) Wire {
	var out Wire
	for _, s := range w.Segments {
		if s.Dst.Port() == port || s.Src.Port() == port {
			out.Segments = append(out.Segments, s)
		}
	}
	return out
}

// PayloadBytes is the total TCP payload captured.
func (w Wire) PayloadBytes() int {
	n := 0
	for _, s := range w.Segments {
		n += len(s.Payload)
	}
	return n
}

// TLSFlows checks every one-way flow (source and destination address and port) whose
// capture starts at the beginning of a TLS connection, that is whose first payload is
// a TLS handshake record: all of its bytes must be a sequence of well-formed TLS
// records (RFC 8446 §5.1: a known content type, legacy version 3.1 or 3.3, a length of
// at most 2^14+256). A last record cut short by the end of the capture is allowed.
// It returns how many flows it checked; flows captured mid-stream are skipped.
func (w Wire) TLSFlows() (int, error) {
	type flow struct{ src, dst netip.AddrPort }
	var order []flow
	streams := map[flow][]byte{}
	for _, s := range w.Segments {
		if len(s.Payload) == 0 {
			continue
		}
		f := flow{s.Src, s.Dst}
		if _, ok := streams[f]; !ok {
			order = append(order, f)
		}
		streams[f] = append(streams[f], s.Payload...)
	}
	checked := 0
	for _, f := range order {
		b := streams[f]
		if len(b) < 5 || b[0] != 22 || b[1] != 3 {
			continue
		}
		checked++
		for off := 0; off+5 <= len(b); {
			typ, major, minor := b[off], b[off+1], b[off+2]
			n := int(binary.BigEndian.Uint16(b[off+3 : off+5]))
			if typ < 20 || typ > 23 || major != 3 || (minor != 1 && minor != 3) || n > 1<<14+256 {
				return checked, fmt.Errorf("flow %s -> %s: bytes at offset %d are not a TLS record header: % x",
					f.src, f.dst, off, b[off:off+5])
			}
			off += 5 + n
		}
	}
	return checked, nil
}
