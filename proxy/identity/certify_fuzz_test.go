package identity

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// certifyResponse encodes a Certify answer as the identity service does.
func certifyResponse(leaf []byte, inters ...[]byte) []byte {
	var b []byte
	b = protowire.AppendTag(b, respLeafField, protowire.BytesType)
	b = protowire.AppendBytes(b, leaf)
	for _, in := range inters {
		b = protowire.AppendTag(b, respInterField, protowire.BytesType)
		b = protowire.AppendBytes(b, in)
	}
	return b
}

// FuzzParseCertifyResponse parses fuzzed Certify answers: nothing may panic, what is
// returned fits in what was received, an answer with no leaf is an error, and what is
// parsed encodes back into an answer that parses to the same.
func FuzzParseCertifyResponse(f *testing.F) {
	f.Add(certifyResponse([]byte("leaf-der"), []byte("inter-1"), []byte("inter-2")))
	f.Add(certifyResponse(nil))
	// An unknown varint field, then the leaf.
	f.Add(append(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 7), certifyResponse([]byte("x"))...))
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		leaf, inters, err := parseCertifyResponse(b)
		if err != nil {
			if leaf != nil || inters != nil {
				t.Fatal("an error with results")
			}
			return
		}
		if len(leaf) == 0 {
			t.Fatal("no error and no leaf")
		}
		total := len(leaf)
		for _, in := range inters {
			total += len(in)
		}
		if total > len(b) {
			t.Fatalf("%d bytes of certificates from a %d-byte answer", total, len(b))
		}
		leaf2, inters2, err := parseCertifyResponse(certifyResponse(leaf, inters...))
		if err != nil || !bytes.Equal(leaf, leaf2) || len(inters) != len(inters2) {
			t.Fatalf("round trip: %v", err)
		}
		for i := range inters {
			if !bytes.Equal(inters[i], inters2[i]) {
				t.Fatalf("round trip: intermediate %d differs", i)
			}
		}
	})
}
