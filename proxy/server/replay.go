package server

import (
	"errors"
	"io"
	"sync"
)

// maxReplayBody is how much of a request body the proxy keeps to send it again on a
// retry. Bigger bodies stream through and are never retried.
const maxReplayBody = 64 << 10

var errAttemptReplaced = errors.New("request body handed to a newer attempt")

// replayBody records a request body while the first attempt streams it, so that a
// retry can send the same bytes again. Each attempt reads through its own
// attemptBody; starting a new attempt detaches the older ones (their reads fail), so
// a transport still writing a finished attempt cannot steal bytes from the next.
type replayBody struct {
	mu      sync.Mutex
	src     io.ReadCloser
	buf     []byte
	eof     bool  // src is fully read into buf
	srcErr  error // src failed (not io.EOF): not replayable
	over    bool  // src exceeded maxReplayBody: buf was dropped, not replayable
	started bool  // some attempt has read from src
	length  int64 // declared Content-Length; -1 unknown
	gen     int
}

// newReplayBody wraps src; a declared length over the limit is known unreplayable
// from the start and is not buffered at all.
func newReplayBody(src io.ReadCloser, contentLength int64) *replayBody {
	return &replayBody{src: src, over: contentLength > maxReplayBody, length: contentLength}
}

// complete reports whether every byte of the body is in buf: src said EOF, or as
// many bytes as declared were read (a transport stops reading there, without
// waiting for EOF). Called with mu held.
func (b *replayBody) complete() bool {
	return !b.over && (b.eof || (b.length >= 0 && int64(len(b.buf)) == b.length))
}

// next returns the body for a new attempt, or false when the body cannot be sent
// again: it was bigger than maxReplayBody, or is still being received (a previous
// attempt is blocked reading it), or failed. Older attempts' bodies stop working.
func (b *replayBody) next() (io.ReadCloser, bool) {
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
	return &attemptBody{b: b, gen: b.gen}, true
}

// replayable reports whether next would succeed now, without detaching anything.
func (b *replayBody) replayable() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	return b.replayableLocked()
}

func (b *replayBody) replayableLocked() bool {
	return b.gen == 0 || !(b.over || b.srcErr != nil || (b.started && !b.complete()))
}

type attemptBody struct {
	b   *replayBody
	gen int
	pos int
}

func (a *attemptBody) Read(p []byte) (int, error) {
	b := a.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.gen != b.gen {
		return 0, errAttemptReplaced
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
	// Held across the read: only the current attempt reads src, and next uses
	// TryLock to see that a read is in progress.
	n, err := b.src.Read(p)
	if n > 0 && !b.over {
		if len(b.buf)+n > maxReplayBody {
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
func (a *attemptBody) Close() error { return nil }
