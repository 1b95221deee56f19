package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// TestGracefulShutdown: an in-flight request finishes after Shutdown starts, new
// connections are refused, and connections still open when the grace period ends are
// closed.
func TestGracefulShutdown(t *testing.T) {
	t.Run("in-flight request completes", func(t *testing.T) {
		mp := newMeshPair(t, pairOpts{})
		type result struct {
			status int
			body   int
			err    error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := h1Client().Get("http://" + mp.addr[svcHTTPBin] + "/delay/0.5")
			if err != nil {
				done <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- result{resp.StatusCode, len(b), err}
		}()
		time.Sleep(150 * time.Millisecond) // the request is now in flight
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- mp.a.srv.Shutdown(ctx) }()
		time.Sleep(50 * time.Millisecond)
		if c, err := net.DialTimeout("tcp", mp.addr[svcHTTPBin], time.Second); err == nil {
			c.Close()
			t.Fatal("proxy A still accepts connections after Shutdown started")
		}
		r := <-done
		if r.err != nil || r.status != 200 || r.body == 0 {
			t.Fatalf("in-flight request: %+v", r)
		}
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown: %v, want a clean drain", err)
		}
	})
	t.Run("grace period ends stuck connections", func(t *testing.T) {
		mp := newMeshPair(t, pairOpts{})
		c, err := net.Dial("tcp", mp.addr[svcTCP]) // opaque, held open by the client
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "still talking")
		time.Sleep(100 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := mp.a.srv.Shutdown(ctx); err == nil {
			t.Fatal("Shutdown reported a clean drain with a connection still open")
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("Shutdown took %s, want about the 300ms grace", time.Since(start))
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("client connection still open after the grace period")
			}
		}
	})
}

// TestGracefulShutdownServerSide: the proxy on the receiving end of weft.h2 tells its
// peers GOAWAY when it shuts down, lets their in-flight requests finish, and closes
// the pooled connection as soon as they have, so its drain ends without waiting for
// the grace period; the client side then stops using that connection.
func TestGracefulShutdownServerSide(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	// A first request leaves a pooled mesh connection from A to B.
	resp, err := h1Client().Get("http://" + mp.addr[svcHTTPBin] + "/get")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	done := make(chan error, 1)
	go func() {
		resp, err := h1Client().Get("http://" + mp.addr[svcHTTPBin] + "/delay/0.5")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		done <- err
	}()
	time.Sleep(150 * time.Millisecond) // the request is now in flight on that connection
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := mp.b.srv.Shutdown(ctx); err != nil {
		t.Fatalf("server-side Shutdown: %v, want a clean drain", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("server-side Shutdown took %s: the idle mesh connection was not closed after GOAWAY", took)
	}
	if err := <-done; err != nil {
		t.Fatalf("in-flight request through the shutting-down proxy: %v", err)
	}
}
