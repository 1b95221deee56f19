package tcpfwd

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of one loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestPipeHalfClose sends a request, half-closes, and still reads a reply that the
// far end writes only after it saw EOF — over real sockets, both directions, with a
// detection prefix and a payload large enough to exercise splice.
func TestPipeHalfClose(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		reqSize int
	}{
		{"small with prefix", "GET", 10},
		{"large no prefix", "", 4 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, proxyIn := tcpPair(t)
			proxyOut, backend := tcpPair(t)
			done := make(chan Result, 1)
			go func() { done <- Pipe(proxyIn, proxyOut, []byte(tt.prefix), nil) }()

			req := bytes.Repeat([]byte("q"), tt.reqSize)
			go func() {
				app.Write(req)
				app.CloseWrite() // half-close: "no more requests"
			}()
			// The backend reads everything up to EOF, then answers.
			backend.SetDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(backend)
			if err != nil {
				t.Fatalf("backend read: %v", err)
			}
			if want := tt.prefix + string(req); string(got) != want {
				t.Fatalf("backend got %d bytes, want %d", len(got), len(want))
			}
			reply := bytes.Repeat([]byte("r"), tt.reqSize*2)
			if _, err := backend.Write(reply); err != nil {
				t.Fatalf("backend write after half-close: %v", err)
			}
			backend.CloseWrite()
			app.SetDeadline(time.Now().Add(10 * time.Second))
			back, err := io.ReadAll(app)
			if err != nil {
				t.Fatalf("app read: %v", err)
			}
			if !bytes.Equal(back, reply) {
				t.Fatalf("app got %d bytes, want %d", len(back), len(reply))
			}
			res := <-done
			if res.Err != nil {
				t.Fatalf("pipe error: %v", res.Err)
			}
			if res.AToB != int64(len(tt.prefix)+len(req)) || res.BToA != int64(len(reply)) {
				t.Fatalf("counted %d/%d, want %d/%d", res.AToB, res.BToA, len(tt.prefix)+len(req), len(reply))
			}
			app.Close()
			backend.Close()
		})
	}
}

// TestPipeReset: a reset on one side tears down the other instead of hanging.
func TestPipeReset(t *testing.T) {
	app, proxyIn := tcpPair(t)
	proxyOut, backend := tcpPair(t)
	done := make(chan Result, 1)
	go func() { done <- Pipe(proxyIn, proxyOut, nil, nil) }()
	backend.SetLinger(0)
	backend.Close() // RST
	app.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(app); err != nil && !isTimeout(err) {
		// a reset or EOF are both fine; only a hang is wrong
	} else if isTimeout(err) {
		t.Fatal("app connection still open after backend reset")
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not return after reset")
	}
	app.Close()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
