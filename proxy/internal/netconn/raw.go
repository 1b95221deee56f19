package netconn

import (
	"io"
	"net"
	"os"
	"sync"
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
	// rd and wr hold each direction's system call and its results. RawConn takes a
	// function; one that captures the call's buffer and results escapes to the heap,
	// two allocations per Read or Write (16 per request through a proxy pair,
	// test/budget). These functions are made once per connection instead.
	rd, wr rawOp
}

// rawOp is one direction's system call: its arguments and results live here, and fn,
// bound once, runs it. mu keeps concurrent callers of the same direction (net.Conn
// allows them; the poller's own lock serialises them anyway) from sharing a call's
// state.
type rawOp struct {
	mu    sync.Mutex
	fn    func(fd uintptr) bool
	p     []byte
	n     int
	errno syscall.Errno
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
	r := &rawConn{TCPConn: tc, rc: rc}
	r.rd.fn = r.rd.read
	r.wr.fn = r.wr.write
	return r
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op := &c.rd
	op.mu.Lock()
	op.p, op.n, op.errno = p, 0, 0
	err := c.rc.Read(op.fn)
	n, errno := op.n, op.errno
	op.p = nil // the caller's buffer is not ours to keep
	op.mu.Unlock()
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

// read is one read(2) into op.p; false asks the poller to wait until readable.
func (op *rawOp) read(fd uintptr) bool {
	p := op.p
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until readable
		}
		op.n, op.errno = int(r), e
		return true
	}
}

func (c *rawConn) Write(p []byte) (int, error) {
	op := &c.wr
	op.mu.Lock()
	op.p, op.n, op.errno = p, 0, 0
	err := c.rc.Write(op.fn)
	written, errno := op.n, op.errno
	op.p = nil
	op.mu.Unlock()
	switch {
	case err != nil:
		return written, c.opError("write", err)
	case errno != 0:
		return written, c.opError("write", os.NewSyscallError("write", errno))
	}
	return written, nil
}

// write writes all of op.p, counting into op.n; false asks the poller to wait until
// writable, and the next call goes on where this one stopped.
func (op *rawOp) write(fd uintptr) bool {
	for op.n < len(op.p) {
		rest := op.p[op.n:]
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			op.n += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait until writable
		default:
			op.errno = e
			return true
		}
	}
	return true
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
