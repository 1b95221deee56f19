package httpmsg

import (
	"context"
	"net/http"
	"testing"
	"time"
)

type recordingSender struct{ codes []int }

func (s *recordingSender) SendInterim(code int, _ http.Header) { s.codes = append(s.codes, code) }

type otherKey struct{}

// A SenderContext carries its sender to InterimSenderFrom, passes every other value
// through, and cancels with the context it wraps: children made by WithCancel and
// AfterFunc from it end when that context does.
func TestSenderContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "v"))
	s := &recordingSender{}
	ctx := &SenderContext{Context: parent, Sender: s}

	if got, ok := InterimSenderFrom(ctx); !ok || got != s {
		t.Fatalf("InterimSenderFrom = %v, %v; want the sender", got, ok)
	}
	if err := PassInterim(ctx, http.StatusEarlyHints, http.Header{}); err != nil || len(s.codes) != 1 {
		t.Fatalf("PassInterim: %v, sender saw %v", err, s.codes)
	}
	if v := ctx.Value(otherKey{}); v != "v" {
		t.Fatalf("Value(otherKey) = %v, want the wrapped context's", v)
	}
	child, childCancel := context.WithCancel(ctx)
	defer childCancel()
	if got, ok := InterimSenderFrom(child); !ok || got != s {
		t.Fatal("a child context lost the sender")
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { close(fired) })
	defer stop()

	cancel()
	for _, c := range []context.Context{ctx, child} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("cancelling the wrapped context did not reach the SenderContext and its child")
		}
		if c.Err() != context.Canceled {
			t.Fatalf("Err = %v, want context.Canceled", c.Err())
		}
	}
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc on the SenderContext did not run")
	}
}
