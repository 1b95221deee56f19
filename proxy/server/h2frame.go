package server

import (
	"bufio"
	"bytes"
	"net"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Framing is what both ends of a weft.h2 connection (h2mesh.go, h2client.go) share:
// the framer, whose write side is used under wmu by every stream, the header encoder,
// the peer's settings and the connection-level send window.
type h2Framing struct {
	nc net.Conn
	fr *http2.Framer

	wmu      sync.Mutex
	wcond    sync.Cond // on wmu: a send window grew, or a stream or the connection ended
	bw       *bufio.Writer
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	sendConn int64 // connection-level send window
	peerInit int64 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxF int   // the peer's SETTINGS_MAX_FRAME_SIZE
	werr     error // a write failed, or the connection ended
}

func (h *h2Framing) init(nc net.Conn) {
	h.nc = nc
	h.bw = bufio.NewWriterSize(nc, 32<<10)
	h.sendConn, h.peerInit, h.peerMaxF = 65535, 65535, 16384
	h.wcond.L = &h.wmu
	h.henc = hpack.NewEncoder(&h.hbuf)
	h.fr = http2.NewFramer(h.bw, bufio.NewReaderSize(nc, 16<<10))
	h.fr.SetMaxReadFrameSize(h2MaxReadFrame)
	h.fr.MaxHeaderListSize = h2MaxHeaderList
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.SetReuseFrames()
}

// flushLocked writes what is buffered; a failure ends the connection. wmu held.
func (h *h2Framing) flushLocked() error {
	if h.werr != nil {
		return h.werr
	}
	if err := h.bw.Flush(); err != nil {
		h.failLocked(err)
		return err
	}
	return nil
}

// failLocked ends the connection for writers: later writes fail with err, waiting
// ones wake up. wmu held.
func (h *h2Framing) failLocked(err error) {
	if h.werr == nil {
		h.werr = err
		h.nc.Close()
	}
	h.wcond.Broadcast()
}

// applySettings applies the peer's SETTINGS and acknowledges them. A new initial
// window size changes every open stream's send window by the difference (RFC 9113
// §6.9.2): adjust applies it to the owner's streams (wmu held). maxStreams, when not
// nil, takes SETTINGS_MAX_CONCURRENT_STREAMS.
func (h *h2Framing) applySettings(f *http2.SettingsFrame, adjust func(delta int64), maxStreams func(uint32)) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - h.peerInit
			h.peerInit = int64(s.Val)
			adjust(delta)
		case http2.SettingMaxFrameSize:
			h.peerMaxF = int(s.Val)
		case http2.SettingHeaderTableSize:
			h.henc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingMaxConcurrentStreams:
			if maxStreams != nil {
				maxStreams(s.Val)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.fr.WriteSettingsAck()
	h.wcond.Broadcast()
	return h.flushLocked()
}

// grow adds a WINDOW_UPDATE's increment to a send window guarded by wmu (the
// connection's, or a stream's) and wakes the writers waiting for window.
func (h *h2Framing) grow(window *int64, inc uint32) {
	h.wmu.Lock()
	*window += int64(inc)
	h.wcond.Broadcast()
	h.wmu.Unlock()
}

// pingAck answers a PING.
func (h *h2Framing) pingAck(data [8]byte) {
	h.wmu.Lock()
	h.fr.WritePing(true, data)
	h.flushLocked()
	h.wmu.Unlock()
}

// windowUpdate gives receive window back to the peer: the connection's (connInc)
// and a stream's (streamInc).
func (h *h2Framing) windowUpdate(connInc int64, id uint32, streamInc int64) {
	if connInc == 0 && streamInc == 0 {
		return
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if connInc > 0 {
		h.fr.WriteWindowUpdate(0, uint32(connInc))
	}
	if streamInc > 0 {
		h.fr.WriteWindowUpdate(id, uint32(streamInc))
	}
	h.flushLocked()
}

// writeHeaderFrames writes a header block as HEADERS and as many CONTINUATION frames
// as the peer's frame size needs. wmu held.
func (h *h2Framing) writeHeaderFrames(id uint32, block []byte, endStream bool) {
	first := true
	for first || len(block) > 0 {
		n := min(len(block), h.peerMaxF)
		frag := block[:n]
		block = block[n:]
		if first {
			h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: endStream, EndHeaders: len(block) == 0})
			first = false
		} else {
			h.fr.WriteContinuation(id, len(block) == 0, frag)
		}
	}
}
