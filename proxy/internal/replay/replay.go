// Package replay keeps a request body so that the same bytes can be sent again: by
// the pipeline's retries (proxy/pipeline) and, through http.Request.GetBody, by a
// client that learns its peer did not process a request (an HTTP/2 stream refused, or
// above a GOAWAY's last stream). It imports only the standard library.
package replay

import (
	"errors"
	"io"
	"sync"
)

// MaxBody is how much of a request body the proxy keeps to send it again on a
// retry. Bigger bodies stream through and are never retried.
const MaxBody = 64 << 10

// ErrAttemptReplaced is what an attempt's body returns once a newer attempt took over.
var ErrAttemptReplaced = errors.New("request body handed to a newer attempt")

// Body records a request body while the first attempt streams it, so that a
// retry can send the same bytes again. Each attempt reads through its own
// attempt; starting a new attempt detaches the older ones (their reads fail), so
// a transport still writing a finished attempt cannot steal bytes from the next.
type Body struct {
	mu      sync.Mutex
	src     io.ReadCloser
	buf     []byte
	eof     bool  // src is fully read into buf
	srcErr  error // src failed (not io.EOF): not replayable
	over    bool  // src exceeded MaxBody: buf was dropped, not replayable
	started bool  // some attempt has read from src
	length  int64 // declared Content-Length; -1 unknown
	gen     int
}

// New wraps src; a declared length over the limit is known unreplayable
// from the start and is not buffered at all.
func New(src io.ReadCloser, contentLength int64) *Body {
	return &Body{src: src, over: contentLength > MaxBody, length: contentLength}
}

// complete reports whether every byte of the body is in buf: src said EOF, or as
// many bytes as declared were read (a transport stops reading there, without
// waiting for EOF). Called with mu held.
func (b *Body) complete() bool {
	return !b.over && (b.eof || (b.length >= 0 && int64(len(b.buf)) == b.length))
}

// Next returns the body for a new attempt, or false when the body cannot be sent
// again: it was bigger than MaxBody, or is still being received (a previous
// attempt is blocked reading it), or failed. Older attempts' bodies stop working.
func (b *Body) Next() (io.ReadCloser, bool) {
	if !b.mu.TryLock() {
		// A previous attempt's transport is inside src.Read: the client has not
		// sent the whole body yet.
		return nil, false
	}
	defer b.mu.Unlock()
	if !b.replayableLocked() {
		return nil, false
	}
	b.gen++
	return &attempt{b: b, gen: b.gen}, true
}

// Replayable reports whether Next would succeed now, without detaching anything.
func (b *Body) Replayable() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	return b.replayableLocked()
}

func (b *Body) replayableLocked() bool {
	return b.gen == 0 || !(b.over || b.srcErr != nil || (b.started && !b.complete()))
}

type attempt struct {
	b   *Body
	gen int
	pos int
}

func (a *attempt) Read(p []byte) (int, error) {
	b := a.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.gen != b.gen {
		return 0, ErrAttemptReplaced
	}
	if !b.over && a.pos < len(b.buf) {
		n := copy(p, b.buf[a.pos:])
		a.pos += n
		return n, nil
	}
	if b.complete() {
		return 0, io.EOF
	}
	if b.srcErr != nil {
		return 0, b.srcErr
	}
	b.started = true
	// Held across the read: only the current attempt reads src, and Next uses
	// TryLock to see that a read is in progress.
	n, err := b.src.Read(p)
	if n > 0 && !b.over {
		if len(b.buf)+n > MaxBody {
			b.over, b.buf = true, nil
		} else {
			b.buf = append(b.buf, p[:n]...)
			a.pos += n
		}
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.srcErr = err
	}
	return n, err
}

// Close does not close the client's body: a retry may still need it. The server
// closes it when the handler returns.
func (a *attempt) Close() error { return nil }

// IsAttempt says whether rc is an attempt's reader of a Body: a request that already
// carries one is replayed by whoever made it, not wrapped again.
func IsAttempt(rc io.ReadCloser) bool {
	_, ok := rc.(*attempt)
	return ok
}

// GetBody returns an http.Request.GetBody for the attempts after the first: each
// call detaches the previous attempt's reader (see Next), and fails when the body
// cannot be sent again.
func (b *Body) GetBody() (io.ReadCloser, error) {
	rc, ok := b.Next()
	if !ok {
		return nil, errNotReplayable
	}
	return rc, nil
}

var errNotReplayable = errors.New("request body cannot be sent again")
