package netconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

func rawPair(t *testing.T) (raw net.Conn, peer *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw = NewRaw(c)
	if _, ok := raw.(*rawConn); !ok {
		t.Fatalf("NewRaw gave %T", raw)
	}
	peer = (<-ch).(*net.TCPConn)
	t.Cleanup(func() { raw.Close(); peer.Close() })
	return raw, peer
}

// Bytes both ways, more than the socket buffers hold (so writes wait for the peer
// to read: the EAGAIN path), then EOF after the peer's half-close.
func TestRawTCPReadWrite(t *testing.T) {
	raw, peer := rawPair(t)
	big := bytes.Repeat([]byte("weft"), 4<<20) // 16 MiB
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
		got <- b
	}()
	if n, err := raw.Write(big); n != len(big) || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("peer got %d bytes, want the %d written", len(b), len(big))
	}
	go func() {
		peer.Write(big)
		peer.CloseWrite()
	}()
	b, err := io.ReadAll(raw)
	if err != nil || !bytes.Equal(b, big) {
		t.Fatalf("read %d bytes, %v; want %d and EOF", len(b), err, len(big))
	}
}

// Deadlines, Close and a reset peer give the errors net.Conn gives.
func TestRawTCPErrors(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		raw, _ := rawPair(t)
		raw.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := raw.Read(make([]byte, 10))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past the deadline: %v, want a timeout", err)
		}
	})
	t.Run("closed while reading", func(t *testing.T) {
		raw, _ := rawPair(t)
		go func() {
			time.Sleep(50 * time.Millisecond)
			raw.Close()
		}()
		if _, err := raw.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed connection: %v, want net.ErrClosed", err)
		}
	})
	t.Run("reset by the peer", func(t *testing.T) {
		raw, peer := rawPair(t)
		peer.SetLinger(0)
		peer.Close() // RST
		time.Sleep(50 * time.Millisecond)
		_, err := raw.Read(make([]byte, 10))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read after the peer's reset: %v, want ECONNRESET", err)
		}
	})
}

// A Read or Write allocates nothing: the system call's function is made once per
// connection, not per call (a capturing closure passed to RawConn escapes, two
// allocations per call).
func TestRawTCPNoAllocations(t *testing.T) {
	raw, peer := rawPair(t)
	msg := []byte("weft")
	buf := make([]byte, len(msg))
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := raw.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(raw, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per write and read, want 0", allocs)
	}
}

// Concurrent readers and writers of one connection (net.Conn allows them) each get
// their own call's bytes: every byte the peer sent arrives once, and every byte
// written reaches the peer.
func TestRawTCPConcurrentCallers(t *testing.T) {
	raw, peer := rawPair(t)
	const callers, each = 4, 1 << 16
	chunk := bytes.Repeat([]byte{'w'}, each)
	go func() {
		for range callers {
			peer.Write(chunk)
		}
		peer.CloseWrite()
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for range callers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1000)
			for {
				n, err := raw.Read(buf)
				mu.Lock()
				total += n
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			if n, err := raw.Write(chunk); n != each || err != nil {
				t.Errorf("write: %d, %v", n, err)
			}
		}()
	}
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, io.LimitReader(peer, callers*each))
		got <- n
	}()
	wg.Wait()
	if total != callers*each {
		t.Fatalf("readers got %d bytes, want %d", total, callers*each)
	}
	if n := <-got; n != callers*each {
		t.Fatalf("peer got %d bytes, want %d", n, callers*each)
	}
}
