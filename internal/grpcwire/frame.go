package grpcwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// HeaderLen is the size of a message's prefix: a compressed flag and a 4-byte
// big-endian length.
const HeaderLen = 5

// ErrCompressed is the error for a message with the compressed flag set. Weft never
// sends grpc-accept-encoding, so a peer may not compress.
var ErrCompressed = errors.New("compressed gRPC message, none was accepted")

// ErrTooLarge is the error (wrapped with the sizes) for a message whose length prefix
// exceeds the reader's limit.
var ErrTooLarge = errors.New("gRPC message exceeds the size limit")

// AppendFrame appends msg to dst as one uncompressed length-prefixed message.
func AppendFrame(dst, msg []byte) []byte {
	dst = slices.Grow(dst, HeaderLen+len(msg))
	dst = append(dst, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(msg)))
	return append(dst, msg...)
}

// Reader reads length-prefixed messages from a stream (a response or request body).
//
// Memory is the point of this type: a length prefix is what a peer claims, not what it
// sends. A prefix over the limit is an error before anything is allocated, and a
// prefix within it costs memory only as the bytes arrive (storage doubles from 64 KiB),
// so a 3-byte body behind a 64 MiB prefix allocates 64 KiB, not 64 MiB (found by
// FuzzRecv). Memory stays within twice what was received, plus 64 KiB.
type Reader struct {
	r     io.Reader
	limit int
	hdr   [HeaderLen]byte
	buf   []byte
}

// retainMax is the largest buffer a Reader keeps between messages: a large snapshot's
// storage is not held for a stream's lifetime.
const retainMax = 64 << 10

// growStep is the first allocation for a message larger than the buffer held.
const growStep = 64 << 10

// NewReader reads messages of at most limit bytes from r. r should be buffered when
// messages are small (every message costs two reads).
func NewReader(r io.Reader, limit int) *Reader {
	return &Reader{r: r, limit: limit}
}

// Next returns the next message. The slice is valid until the following call. At a
// clean end between messages it returns io.EOF; a stream that ends inside a prefix or a
// message returns io.ErrUnexpectedEOF; ErrCompressed and ErrTooLarge as documented;
// any other error is the underlying reader's.
func (r *Reader) Next() ([]byte, error) {
	if cap(r.buf) > retainMax {
		r.buf = nil
	}
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return nil, err // io.EOF only when no byte of the prefix arrived
	}
	if r.hdr[0] != 0 {
		return nil, ErrCompressed
	}
	n := binary.BigEndian.Uint32(r.hdr[1:])
	if uint64(n) > uint64(r.limit) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, r.limit)
	}
	b, err := readGrowing(r.r, int(n), r.buf)
	r.buf = b
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// readGrowing reads n bytes into buf's storage, or into storage that grows as the
// bytes arrive.
func readGrowing(r io.Reader, n int, buf []byte) ([]byte, error) {
	if cap(buf) >= n {
		b := buf[:n]
		_, err := io.ReadFull(r, b)
		return b, err
	}
	b := buf[:0]
	for len(b) < n {
		want := min(n-len(b), max(len(b), growStep))
		b = slices.Grow(b, want)
		m, err := io.ReadFull(r, b[len(b):len(b)+want])
		b = b[:len(b)+m]
		if err != nil {
			return b, err
		}
	}
	return b, nil
}
