package detect

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// clientHelloBytes captures a real ClientHello from crypto/tls.
func clientHelloBytes(t testing.TB, sni string, alpn []string) []byte {
	t.Helper()
	c, s := net.Pipe()
	go func() {
		tc := tls.Client(c, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true})
		_ = tc.Handshake()
	}()
	buf := make([]byte, 0, 4096)
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		tmp := make([]byte, 4096)
		n, err := s.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil {
			t.Fatalf("read hello: %v", err)
		}
		if len(buf) >= 5 && len(buf) >= 5+int(buf[3])<<8|int(buf[4]) {
			break
		}
	}
	s.Close()
	c.Close()
	return buf
}

func TestClassify(t *testing.T) {
	hello := clientHelloBytes(t, "web.default.svc", []string{"weft.h2", "weft.tcp"})
	tests := []struct {
		name     string
		in       []byte
		wantDone bool
		want     Kind
		wantALPN []string
		wantSNI  string
	}{
		{"get", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), true, HTTP1, nil, ""},
		{"post http/1.0", []byte("POST /x?y=1 HTTP/1.0\r\n"), true, HTTP1, nil, ""},
		{"bare LF", []byte("GET / HTTP/1.1\n"), true, HTTP1, nil, ""},
		{"method only", []byte("GET"), false, Opaque, nil, ""},
		{"partial line", []byte("GET /index.html HTT"), false, Opaque, nil, ""},
		{"http/2 version in request line", []byte("GET / HTTP/2.0\r\n"), true, Opaque, nil, ""},
		{"no version", []byte("GET /\r\n"), true, Opaque, nil, ""},
		{"h2 preface", []byte(Preface + "\x00\x00\x00\x04"), true, HTTP2, nil, ""},
		{"h2 preface partial", []byte("PRI * HTTP/2"), false, Opaque, nil, ""},
		{"mysql-like binary", []byte{0x4a, 0x00, 0x00, 0x00, 0x0a, '8', '.'}, true, Opaque, nil, ""},
		{"redis inline", []byte("PING\r\n"), true, Opaque, nil, ""},
		{"leading space", []byte(" GET / HTTP/1.1\r\n"), true, Opaque, nil, ""},
		{"tls hello", hello, true, TLS, []string{"weft.h2", "weft.tcp"}, "web.default.svc"},
		{"tls hello truncated", hello[:len(hello)-10], false, Opaque, nil, ""},
		{"tls record not handshake version", []byte{0x16, 0x02, 0x01}, true, Opaque, nil, ""},
		{"tls record header only", []byte{0x16, 0x03, 0x01, 0x00, 0x10}, false, Opaque, nil, ""},
		{"tls not client hello", []byte{0x16, 0x03, 0x01, 0x00, 0x10, 0x02}, true, Opaque, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, done := Classify(tt.in)
			if done != tt.wantDone {
				t.Fatalf("done = %v, want %v (result %+v)", done, tt.wantDone, r)
			}
			if !done {
				return
			}
			if r.Kind != tt.want {
				t.Fatalf("kind = %v, want %v", r.Kind, tt.want)
			}
			if tt.want == TLS {
				if r.SNI != tt.wantSNI || len(r.ALPN) != len(tt.wantALPN) {
					t.Fatalf("sni %q alpn %q, want %q %q", r.SNI, r.ALPN, tt.wantSNI, tt.wantALPN)
				}
				for i := range r.ALPN {
					if r.ALPN[i] != tt.wantALPN[i] {
						t.Fatalf("alpn %q, want %q", r.ALPN, tt.wantALPN)
					}
				}
			}
		})
	}
}

// TestDetectOnSocket drives Detect over real loopback TCP connections, including a
// client that sends nothing (a server-speaks-first protocol) and one that sends its
// request line in two pieces.
func TestDetectOnSocket(t *testing.T) {
	tests := []struct {
		name         string
		writes       []string
		gap          time.Duration
		want         Kind
		wantTimedOut bool
	}{
		{"http1 in one write", []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, 0, HTTP1, false},
		{"http1 split", []string{"GE", "T / HTTP/1.1\r\n\r\n"}, 20 * time.Millisecond, HTTP1, false},
		{"h2c preface split", []string{"PRI * HTTP/2.0\r\n", "\r\nSM\r\n\r\n"}, 20 * time.Millisecond, HTTP2, false},
		{"silent client times out", nil, 0, Opaque, true},
		{"partial then silence times out", []string{"GET / HT"}, 0, Opaque, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			srv, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			go func() {
				for i, w := range tt.writes {
					if i > 0 {
						time.Sleep(tt.gap)
					}
					client.Write([]byte(w))
				}
			}()
			start := time.Now()
			r, pc, err := Detect(srv, 200*time.Millisecond)
			if err != nil {
				t.Fatalf("detect: %v", err)
			}
			if r.Kind != tt.want || r.TimedOut != tt.wantTimedOut {
				t.Fatalf("got %v timedOut=%v, want %v timedOut=%v", r.Kind, r.TimedOut, tt.want, tt.wantTimedOut)
			}
			if tt.wantTimedOut && time.Since(start) < 150*time.Millisecond {
				t.Fatalf("timed out too early: %s", time.Since(start))
			}
			// The bytes read during detection are replayed first.
			all := ""
			for _, w := range tt.writes {
				all += w
			}
			client.Write([]byte("tail"))
			client.(*net.TCPConn).CloseWrite()
			got, _ := io.ReadAll(pc)
			if string(got) != all+"tail" {
				t.Fatalf("replayed %q, want %q", got, all+"tail")
			}
		})
	}
}

// FuzzClassify checks that classification never panics, that a decision is stable
// when more bytes arrive (detection must not change its mind), and that the ClientHello
// parser agrees with itself.
func FuzzClassify(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte(Preface))
	f.Add(clientHelloBytes(f, "a.b", []string{"weft.h2"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, done := Classify(data)
		if !done {
			if r.Kind != Opaque {
				t.Fatalf("undecided result has kind %v", r.Kind)
			}
			return
		}
		if len(data) < MaxPeek {
			more := append(bytes.Clone(data), "xyz\r\n"...)
			r2, done2 := Classify(more)
			if !done2 || r2.Kind != r.Kind {
				t.Fatalf("decision changed with more bytes: %v -> %v (done=%v)", r.Kind, r2.Kind, done2)
			}
		}
	})
}
