package admin

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// The admin write endpoints trust a loopback client, which is what every container
// of the pod is (the app's preStop hook, `kubectl exec ... curl`, linkerd-await-like
// wrappers that end a Job's proxy). The one loopback client they must not trust is
// the proxy itself: its relays (the inbound side forwarding for a peer, the outbound
// side for the app) open connections from loopback on behalf of someone else. So a
// write is refused when the client end of the connection is a socket this very
// process holds: that is a relay, whichever path opened it. The kernel's socket
// table answers that without any bookkeeping on the data path, where every
// connection would otherwise pay for it.

// procRoot is where the kernel's process and socket tables are read; a variable for
// the tests' error case.
var procRoot = "/proc"

// errClientGone is returned when the client's socket is no longer open: a relay
// whose far end reset after sending its request would otherwise pass as a stranger.
var errClientGone = errors.New("the client's socket is no longer open")

// heldBySelf reports whether this process holds the client end of the loopback TCP
// connection from client to server (as the admin server sees them: its remote and
// local addresses).
func heldBySelf(client, server netip.AddrPort) (bool, error) {
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	server = netip.AddrPortFrom(server.Addr().Unmap(), server.Port())
	inode, err := socketInode(client, server)
	if err != nil {
		return false, err
	}
	dir := procRoot + "/self/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("list open files: %w", err)
	}
	want := "socket:[" + inode + "]"
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == want {
			return true, nil
		}
	}
	return false, nil
}

// socketInode finds the socket whose local address is client and remote address is
// server in the network namespace's TCP tables, and returns its inode.
func socketInode(client, server netip.AddrPort) (string, error) {
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(procRoot + "/self/net/" + name)
		if errors.Is(err, os.ErrNotExist) && name == "tcp6" {
			continue // IPv6 disabled
		}
		if err != nil {
			return "", fmt.Errorf("read socket table: %w", err)
		}
		inode, found, err := scanSockets(f, client, server)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("read socket table %s: %w", name, err)
		}
		if found {
			if inode == "0" {
				// Orphaned: closed by its process, still in the table.
				return "", errClientGone
			}
			return inode, nil
		}
	}
	return "", errClientGone
}

// scanSockets reads a /proc/net/tcp{,6} table: a header line, then one socket per
// line, "sl local_address rem_address st ... uid timeout inode ...", addresses as
// hexadecimal address:port.
func scanSockets(f *os.File, client, server netip.AddrPort) (string, bool, error) {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 512), 4096)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		local, err1 := parseProcAddr(fields[1])
		remote, err2 := parseProcAddr(fields[2])
		if err1 != nil || err2 != nil {
			continue
		}
		if local == client && remote == server {
			return fields[9], true, nil
		}
	}
	return "", false, sc.Err()
}

// parseProcAddr reads "0100007F:1F90" (IPv4) or 32 hexadecimal digits and a port
// (IPv6). The kernel prints the address as 32-bit words in the host's byte order and
// the port in ordinary hexadecimal.
func parseProcAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad socket port %q", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	var b [16]byte
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	var a netip.Addr
	if len(raw) == 4 {
		a = netip.AddrFrom4([4]byte(b[:4]))
	} else {
		a = netip.AddrFrom16(b).Unmap()
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}
