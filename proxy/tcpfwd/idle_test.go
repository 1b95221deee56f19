package tcpfwd

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestPipeIdle: a connection that moves nothing is closed after the idle timeout,
// with ErrIdle; one that keeps moving bytes in a single direction (the other side
// silent) is not; the bytes all arrive.
func TestPipeIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	tests := []struct {
		name string
		// talk runs on the backend's side of the pipe while the client stays
		// silent; it returns when it is done writing.
		talk     func(backend net.Conn)
		wantIdle bool
		minLife  time.Duration
	}{
		{
			name:     "silent both ways is closed",
			talk:     func(net.Conn) {},
			wantIdle: true, minLife: idle,
		},
		{
			name: "a one-way trickle keeps it open",
			talk: func(b net.Conn) {
				for range 10 {
					b.Write([]byte("x"))
					time.Sleep(idle / 3)
				}
			},
			wantIdle: true, minLife: 10 * idle / 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, a := tcpPair(t)
			b, backend := tcpPair(t)
			defer client.Close()
			defer backend.Close()
			start := time.Now()
			done := make(chan Result, 1)
			go func() { done <- PipeIdle(a, b, nil, nil, idle) }()
			go tt.talk(backend)
			got := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, client)
				got <- n
			}()
			var res Result
			select {
			case res = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the pipe never closed")
			}
			life := time.Since(start)
			if errors.Is(res.Err, ErrIdle) != tt.wantIdle {
				t.Fatalf("err %v, want idle %v", res.Err, tt.wantIdle)
			}
			if life < tt.minLife || life > tt.minLife+2*idle {
				t.Fatalf("closed after %s, want between %s and %s", life, tt.minLife, tt.minLife+2*idle)
			}
			if n := <-got; n != res.BToA {
				t.Fatalf("client read %d bytes, pipe moved %d", n, res.BToA)
			}
		})
	}
}
