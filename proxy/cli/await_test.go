package cli

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/freeport"
)

// readyServer answers /ready 503 until ready is set, then 200, and counts requests.
func readyServer(t *testing.T) (port int, ready *atomic.Bool, hits *atomic.Int64) {
	t.Helper()
	ready, hits = &atomic.Bool{}, &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/ready" || !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	}))
	t.Cleanup(srv.Close)
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ = strconv.Atoi(p)
	return port, ready, hits
}

func TestAwait(t *testing.T) {
	t.Run("returns within a poll interval of /ready turning 200", func(t *testing.T) {
		port, ready, hits := readyServer(t)
		done := make(chan int, 1)
		var stderr bytes.Buffer
		go func() { done <- runAwait([]string{"--admin-port=" + strconv.Itoa(port), "--timeout=10s"}, &stderr) }()
		time.Sleep(300 * time.Millisecond)
		select {
		case code := <-done:
			t.Fatalf("await returned %d while /ready answered 503: %s", code, stderr.String())
		default:
		}
		flipped := time.Now()
		ready.Store(true)
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("await exited %d: %s", code, stderr.String())
			}
			// The poll interval is at most 50 ms; allow for a loaded machine.
			if d := time.Since(flipped); d > 500*time.Millisecond {
				t.Errorf("await returned %s after /ready turned 200, want within one poll interval (50ms)", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("await did not return after /ready turned 200")
		}
		// 300 ms of 503s: the interval grows from 5 ms to 50 ms, so about ten requests,
		// not a busy loop and not one a second.
		if n := hits.Load(); n < 4 || n > 40 {
			t.Errorf("%d requests to /ready in 300ms, want between 4 and 40", n)
		}
	})
	t.Run("fails after its timeout while /ready answers 503", func(t *testing.T) {
		port, _, _ := readyServer(t)
		var stderr bytes.Buffer
		start := time.Now()
		code := runAwait([]string{"--admin-port=" + strconv.Itoa(port), "--timeout=300ms"}, &stderr)
		if code != 1 {
			t.Fatalf("exit %d, want 1: %s", code, stderr.String())
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
			t.Errorf("await gave up after %s, want its 300ms timeout", d)
		}
		if !strings.Contains(stderr.String(), "not ready within 300ms") || !strings.Contains(stderr.String(), "503") {
			t.Errorf("message %q does not say what was last seen", stderr.String())
		}
	})
	t.Run("fails after its timeout when nothing listens", func(t *testing.T) {
		var stderr bytes.Buffer
		code := runAwait([]string{"--admin-port=" + strconv.Itoa(unusedPort(t)), "--timeout=200ms"}, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), "refused") {
			t.Errorf("exit %d, message %q; want 1 and a refused connection", code, stderr.String())
		}
	})
	for _, args := range [][]string{{"--admin-port=0"}, {"--admin-port=70000"}, {"--timeout=0s"}, {"--timeout=-1s"}, {"extra"}, {"--nope"}} {
		t.Run("refuses "+strings.Join(args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			if code := runAwait(args, &stderr); code != 2 {
				t.Errorf("exit %d, want 2: %s", code, stderr.String())
			}
		})
	}
}

func unusedPort(t *testing.T) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestAwaitKeepsWhatItSaw: when the deadline cuts a probe short, the failure reported
// is what an earlier probe saw (the 503), not the cut probe's "deadline exceeded":
// a hook that fails must say why the proxy was not ready.
func TestAwaitKeepsWhatItSaw(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) > 1 {
			// Every later probe hangs past the deadline, as on a loaded node.
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := awaitReady(ctx, srv.URL+"/ready")
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("awaitReady: %v, want the 503 the first probe saw", err)
	}
}
