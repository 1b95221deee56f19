package detect

// clientHello holds what the proxy wants from a TLS ClientHello.
type clientHello struct {
	sni  string
	alpn []string
}

// parseClientHello parses the first TLS record of buf as a ClientHello
// (RFC 8446 §4.1.2). complete is false when the record is not all there yet; ok is
// false when the bytes cannot be a ClientHello. Only a ClientHello that fits in one
// record is parsed (every real one does); a fragmented one is reported as TLS without
// ALPN.
func parseClientHello(buf []byte) (h clientHello, complete, ok bool) {
	if len(buf) < 5 {
		return h, false, true
	}
	if buf[0] != 0x16 || buf[1] != 0x03 {
		return h, false, false
	}
	recLen := int(buf[3])<<8 | int(buf[4])
	if recLen < 4 || recLen > 16384+256 {
		return h, false, false
	}
	if len(buf) < 5 {
		return h, false, true
	}
	if len(buf) >= 6 && buf[5] != 0x01 { // handshake type client_hello
		return h, false, false
	}
	if len(buf) < 5+recLen {
		return h, false, true
	}
	s := reader(buf[5 : 5+recLen])
	var typ uint8
	var body reader
	if !s.u8(&typ) || !s.prefixed(3, &body) {
		// Handshake message longer than the record: fragmented, accept as TLS.
		return h, true, typ == 0x01
	}
	var skip reader
	if !body.skip(2+32) || // legacy_version, random
		!body.prefixed(1, &skip) || // legacy_session_id
		!body.prefixed(2, &skip) || // cipher_suites
		!body.prefixed(1, &skip) { // legacy_compression_methods
		return h, true, false
	}
	if len(body) == 0 {
		return h, true, true // no extensions
	}
	var exts reader
	if !body.prefixed(2, &exts) {
		return h, true, false
	}
	for len(exts) > 0 {
		var typ uint16
		var data reader
		if !exts.u16(&typ) || !exts.prefixed(2, &data) {
			return h, true, false
		}
		switch typ {
		case 0: // server_name (RFC 6066 §3)
			var list reader
			if !data.prefixed(2, &list) {
				return h, true, false
			}
			for len(list) > 0 {
				var nameType uint8
				var name reader
				if !list.u8(&nameType) || !list.prefixed(2, &name) {
					return h, true, false
				}
				if nameType == 0 && h.sni == "" {
					h.sni = string(name)
				}
			}
		case 16: // application_layer_protocol_negotiation (RFC 7301 §3.1)
			var list reader
			if !data.prefixed(2, &list) {
				return h, true, false
			}
			for len(list) > 0 {
				var proto reader
				if !list.prefixed(1, &proto) || len(proto) == 0 {
					return h, true, false
				}
				h.alpn = append(h.alpn, string(proto))
			}
		}
	}
	return h, true, true
}

// reader is a tiny cursor over TLS's length-prefixed encoding.
type reader []byte

func (r *reader) u8(v *uint8) bool {
	if len(*r) < 1 {
		return false
	}
	*v = (*r)[0]
	*r = (*r)[1:]
	return true
}

func (r *reader) u16(v *uint16) bool {
	if len(*r) < 2 {
		return false
	}
	*v = uint16((*r)[0])<<8 | uint16((*r)[1])
	*r = (*r)[2:]
	return true
}

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

// prefixed reads a field with an n-byte big-endian length prefix.
func (r *reader) prefixed(n int, out *reader) bool {
	if len(*r) < n {
		return false
	}
	l := 0
	for i := 0; i < n; i++ {
		l = l<<8 | int((*r)[i])
	}
	if len(*r) < n+l {
		return false
	}
	*out = (*r)[n : n+l]
	*r = (*r)[n+l:]
	return true
}
