// Package tcpfwd forwards opaque TCP streams in both directions with half-close.
package tcpfwd

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// closeWriter is implemented by *net.TCPConn (shutdown(SHUT_WR)) and *tls.Conn
// (close_notify).
type closeWriter interface{ CloseWrite() error }

// Result is what Pipe moved and why it stopped.
type Result struct {
	AToB, BToA int64
	// Err is the first error other than a clean EOF, or nil.
	Err error
}

// Pipe copies a→b and b→a until both directions have finished, then closes both.
// When one direction reaches EOF, the destination's write side is half-closed and
// the other direction keeps flowing (a client may shut down its write side and still
// read the reply). An error in either direction closes both connections.
//
// When a and b are both *net.TCPConn, io.Copy uses (*net.TCPConn).ReadFrom, which
// moves the bytes with splice(2) through a kernel pipe: they never enter user space
// (zero copy). Callers must therefore pass the bare *net.TCPConn, not a wrapper, for
// plaintext forwarding; bytes read during protocol detection are written with
// prefixA/prefixB first (towards b and a respectively).
func Pipe(a, b net.Conn, prefixA, prefixB []byte) Result {
	var (
		res  Result
		once sync.Once
		wg   sync.WaitGroup
	)
	fail := func(err error) {
		once.Do(func() {
			res.Err = err
			a.Close()
			b.Close()
		})
	}
	copyDir := func(dst, src net.Conn, prefix []byte, n *int64) {
		defer wg.Done()
		if len(prefix) > 0 {
			m, err := dst.Write(prefix)
			*n += int64(m)
			if err != nil {
				fail(err)
				return
			}
		}
		m, err := io.Copy(dst, src)
		*n += m
		if err != nil {
			fail(err)
			return
		}
		if cw, ok := dst.(closeWriter); ok {
			if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
				fail(err)
			}
		}
	}
	wg.Add(2)
	go copyDir(b, a, prefixA, &res.AToB)
	copyDir(a, b, prefixB, &res.BToA)
	wg.Wait()
	a.Close()
	b.Close()
	if errors.Is(res.Err, net.ErrClosed) {
		res.Err = nil
	}
	return res
}

// Errno names the system error in err ("ECONNRESET"), or "" when there is none, for
// the errno label of tcp_close_total.
func Errno(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return ""
}
