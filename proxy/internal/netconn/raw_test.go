package netconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
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
