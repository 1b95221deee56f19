package netconn

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawConn reads and writes a TCP connection with raw system calls on its
// non-blocking socket, and waits for readiness through Go's poller as usual.
//
// Go's own Read and Write announce every system call to the scheduler
// (entersyscall/exitsyscall), because a system call may block. On a non-blocking
// socket these cannot block, and the announcement is not free: when the proxy's
// only thread was idle, the runtime's monitor thread sleeps, and the first system
// call after a wake-up wakes it with a futex — measured at 6–9% of a proxy's CPU at
// 1,000 requests per second. Deadlines and Close keep working: they act on the
// poller, which RawConn waits on.
type rawConn struct {
	*net.TCPConn
	rc syscall.RawConn
}

// NewRaw wraps c in a rawConn, or returns it as it is when its socket is not reachable.
func NewRaw(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &rawConn{TCPConn: tc, rc: rc}
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait until readable
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(p []byte) (int, error) {
	written := 0
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for written < len(p) {
			rest := p[written:]
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
			switch e {
			case 0:
				written += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait until writable
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return written, c.opError("write", err)
	case errno != 0:
		return written, c.opError("write", os.NewSyscallError("write", errno))
	}
	return written, nil
}

// opError wraps an error the way net.Conn's methods do, so that callers' checks
// (net.ErrClosed, os.ErrDeadlineExceeded, Timeout, errno) see what they expect.
func (c *rawConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// ReadFrom and WriteTo hide *net.TCPConn's, which io.Copy would otherwise use: they
// do their reads and writes through the socket's regular path, not the methods above.
func (c *rawConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(onlyWriter{c}, r) }
func (c *rawConn) WriteTo(w io.Writer) (int64, error)  { return io.Copy(w, onlyReader{c}) }

type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }
