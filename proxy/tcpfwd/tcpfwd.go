// Package tcpfwd forwards opaque TCP streams in both directions with half-close.
package tcpfwd

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
	return PipeIdle(a, b, prefixA, prefixB, 0)
}

// ErrIdle is Result.Err when PipeIdle closed a connection that moved no byte for its
// idle timeout.
var ErrIdle = errors.New("idle timeout: no traffic in either direction")

// idleChunk is how much one direction moves between two checks of its idle
// deadline: the splice loop returns to Go after at most this many bytes, and a
// direction's read deadline is pushed back then. At 1 MiB the extra system call is
// amortised over a megabyte, not paid per segment.
const idleChunk = 1 << 20

// PipeIdle is Pipe that also closes both connections once no byte has moved in
// either direction for idle (0: never). Each direction reads with a deadline of half
// the timeout and notes the time whenever it moved bytes; a direction whose read
// times out closes both only when neither moved anything for the whole timeout, so
// a one-way stream (a download while the client is silent) is never idle. A
// direction blocked writing to a peer that stopped reading moves nothing either, so
// a stalled connection is closed too. Closing happens between idle and 1.5 x idle
// after the last byte (2 x when the last bytes came early in a check's window).
func PipeIdle(a, b net.Conn, prefixA, prefixB []byte, idle time.Duration) Result {
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
	var last atomic.Int64 // unix nanoseconds of the last progress in either direction
	last.Store(time.Now().UnixNano())
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
		var err error
		if idle <= 0 {
			var m int64
			m, err = io.Copy(dst, src)
			*n += m
		} else {
			err = copyIdle(dst, src, n, idle, &last)
		}
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

// copyIdle copies src to dst in chunks of at most idleChunk bytes, each read with a
// deadline of idle/2, until src ends (nil), an error, or both directions were idle
// for idle (ErrIdle). Limiting src with an io.LimitedReader keeps splice(2): the
// standard library's TCPConn.ReadFrom unwraps it.
func copyIdle(dst, src net.Conn, n *int64, idle time.Duration, last *atomic.Int64) error {
	lr := &io.LimitedReader{R: src}
	for {
		if err := src.SetReadDeadline(time.Now().Add(idle / 2)); err != nil {
			return err
		}
		lr.N = idleChunk
		m, err := io.Copy(dst, lr)
		*n += m
		now := time.Now().UnixNano()
		if m > 0 {
			last.Store(now)
		}
		switch {
		case err == nil && lr.N > 0:
			return nil // src ended before the chunk did: EOF
		case err == nil:
			continue // a full chunk
		case errors.Is(err, os.ErrDeadlineExceeded):
			if now-last.Load() >= int64(idle) {
				return ErrIdle
			}
		default:
			return err
		}
	}
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
