package pipeline

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// The route's idle timeout (timeout.weft.dev/idle, Linkerd's timeout.linkerd.io/idle):
// a request ends when no byte of its body or of its response's body has moved for
// that long, whatever state it is in (waiting for the response head counts). Unlike
// the request timeout it never fires on a stream that keeps moving, so long-lived
// streams can be bounded against stalls without being cut.

// errIdle is the idle watchdog's cancellation cause.
var errIdle = errors.New("idle timeout")

// idleWatch is one request's idle watchdog: every body read on either side calls
// touch, which pushes the expiry back; on expiry the request's context ends.
type idleWatch struct {
	d      time.Duration
	cancel context.CancelCauseFunc
	mu     sync.Mutex // guards timer against a touch racing stop
	timer  *time.Timer
}

// idleContext is the request's context under the watchdog: it ends like its parent,
// or when the watchdog fires, and then reports context.DeadlineExceeded, so the
// pipeline answers 504 (gRPC: DEADLINE_EXCEEDED), does not retry, and does not
// mistake the expiry for a client that went away (context.Canceled).
type idleContext struct {
	context.Context
}

func (c idleContext) Err() error {
	if errors.Is(context.Cause(c.Context), errIdle) {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

// watchIdle starts the watchdog for a request of context parent; stop must be called
// when the request is done.
func watchIdle(parent context.Context, d time.Duration) (context.Context, *idleWatch) {
	ctx, cancel := context.WithCancelCause(parent)
	w := &idleWatch{d: d, cancel: cancel}
	w.timer = time.AfterFunc(d, func() { cancel(errIdle) })
	return idleContext{ctx}, w
}

// touch records that a byte moved.
func (w *idleWatch) touch() {
	w.mu.Lock()
	w.timer.Reset(w.d)
	w.mu.Unlock()
}

func (w *idleWatch) stop() {
	w.mu.Lock()
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(context.Canceled)
}

// idleBody is a body whose reads push the watchdog back.
type idleBody struct {
	io.ReadCloser
	w *idleWatch
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.w.touch()
	}
	return n, err
}
