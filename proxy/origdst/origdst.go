// Package origdst reads the original destination of a connection that iptables
// REDIRECTed to the proxy.
package origdst

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNotRedirected means the connection was not NATed: its original destination is the
// listener itself (or conntrack knows nothing about it).
var ErrNotRedirected = errors.New("connection was not redirected")

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h;
// it has the same value as SO_ORIGINAL_DST but lives at level SOL_IPV6.
const ip6tSOOriginalDst = 80

// Get returns the pre-NAT destination of an accepted TCP connection with
// getsockopt(SO_ORIGINAL_DST) for IPv4 and getsockopt(IP6T_SO_ORIGINAL_DST) for IPv6,
// read from conntrack by the kernel. A connection that was not redirected (its
// original destination equals its local address) yields ErrNotRedirected.
func Get(c *net.TCPConn) (netip.AddrPort, error) {
	local, _ := c.LocalAddr().(*net.TCPAddr)
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	isV6 := local != nil && local.IP.To4() == nil
	var (
		dst  netip.AddrPort
		serr error
	)
	err = rc.Control(func(fd uintptr) {
		if isV6 {
			dst, serr = getV6(int(fd))
		} else {
			dst, serr = getV4(int(fd))
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return netip.AddrPort{}, ErrNotRedirected
		}
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	if local != nil && dst == local.AddrPort() {
		return netip.AddrPort{}, ErrNotRedirected
	}
	return netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), nil
}

// getV4 reads a struct sockaddr_in.
func getV4(fd int) (netip.AddrPort, error) {
	var sa unix.RawSockaddrInet4
	l := uint32(unsafe.Sizeof(sa))
	if err := getsockopt(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), &l); err != nil {
		return netip.AddrPort{}, err
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port), nil
}

// getV6 reads a struct sockaddr_in6.
func getV6(fd int) (netip.AddrPort, error) {
	var sa unix.RawSockaddrInet6
	l := uint32(unsafe.Sizeof(sa))
	if err := getsockopt(fd, unix.SOL_IPV6, ip6tSOOriginalDst, unsafe.Pointer(&sa), &l); err != nil {
		return netip.AddrPort{}, err
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port), nil
}

// getsockopt is the raw system call: x/sys/unix has no typed wrapper that returns a
// sockaddr for these options.
func getsockopt(fd, level, opt int, val unsafe.Pointer, l *uint32) error {
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(val), uintptr(unsafe.Pointer(l)), 0)
	if e != 0 {
		return e
	}
	return nil
}
