// Package h2 is Weft's own HTTP/2 (RFC 9113), both ends: the Server that serves
// weft.h2 connections from peer proxies (and apps' h2c), and the Client that sends
// requests to one peer proxy over connections it dials. Like golang.org/x/net/http2,
// whose framer and HPACK it uses, it stands apart from the proxy's HTTP layer: the
// server's only contract is an http.Handler and the Server fields (a function that
// runs handlers, a Logger, a Draining registry); the client's is http.RoundTripper
// and, for requests it may send again, http.Request.GetBody. It imports only the
// standard library, golang.org/x/net and proxy/internal/httpmsg.
//
// Files: contract.go is the server's contract (Server, ServeConnOpts, Logger,
// Draining); framing.go is what both ends share (framer, settings, flow control, the
// write lock); pipe.go a stream's incoming body; fields.go header-field rules;
// server.go and server_stream.go the server's connection and streams; client.go and
// client_stream.go the client's.
//
// # Goroutines and what they own
//
// Server, per connection:
//   - the read loop (the goroutine that called ServeConn) owns reading: framing.nc's
//     read side, framing.br and the framer's reader. It alone creates streams,
//     pushes DATA into their pipes and reads serverStream.peerReset;
//   - one handler goroutine per stream (Server.Run) owns that stream's response
//     state: serverStream.header, status, wroteHeader, declared, pending, failed.
//     It writes its frames itself, under wmu;
//   - the idle timer and the Draining registry call GoAway from their own goroutines.
//
// Client, per connection:
//   - readLoop owns reading, clientStream.gotResp and num1xx, and delivers each
//     response once (setResp);
//   - healthLoop pings a silent connection and closes a dead one;
//   - the caller of RoundTrip writes the request's HEADERS itself; a goroutine per
//     request body (writeBody) writes its DATA and trailers;
//   - whoever reads a response body returns its window (Read, Close);
//   - dialOne dials a new connection on behalf of every request waiting for one.
//
// # Locks and what they guard
//
//   - framing.wmu (with wcond on it): the write side of the connection: bw, the
//     framer's writer, henc and hbuf, the send windows (sendConn, and every stream's
//     sendWindow), the peer's settings (peerInit, peerMaxF, peerMaxHdr), werr,
//     wdeadline; on the server serverStream.reset and endSent, on the client
//     clientStream.reset and clientConn.nextID. wcond wakes writers waiting for send
//     window, and every one of them when a stream or the connection ends. A flush
//     holds wmu for at most writeTimeout (a peer that stops reading fails the
//     connection rather than every writer waiting for ever).
//   - serverConn.mu: streams, lastID, goingAway, closed, resetIDs, resetNext, and
//     the idle timer's resets.
//   - clientConn.mu: streams, reserved, maxStreams, goingAway, closed, closeErr.
//   - Client.mu: conns and dialing.
//   - pipe.mu (with cond on it): one stream's received body: buf, off, err, fields,
//     closed, and its receive window (window, unack, recv, want, got).
//   - clientStream.respMu: orders the one delivery of a response (setResp).
//   - Atomics, no lock: framing.unackConn and recvConn (the connection's receive
//     window: the read loop takes, readers give back), clientConn.lastRead,
//     clientStream.ended and sentEnd.
//   - connWindow is set before the connection is shared and never changes.
//
// # Lock order
//
// A goroutine holding one of these locks takes only those after it:
//
//	Client.mu  ->  clientConn.wmu  ->  clientConn.mu
//	serverConn.wmu  ->  serverConn.mu
//
// (Client.mu is held while reserve takes clientConn.mu; applySettings holds wmu
// while adjustStreams takes mu; roundTrip takes wmu, then mu.) pipe.mu and respMu
// are leaves: nothing else is taken while holding them, and they are never taken
// under wmu, so a reader blocked in a pipe never holds up a writer. A pool above
// the client (proxy/transport) takes its own lock before Client.mu.
package h2
