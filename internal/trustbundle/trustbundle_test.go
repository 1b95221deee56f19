/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package trustbundle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newCA makes a CA certificate named name, valid [t0-1h, t0+life), signed by parent
// (self-signed when parent is nil).
func newCA(t *testing.T, name string, life time.Duration, parent *ca) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.Add(life),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: c, key: key}
}

func TestCompute(t *testing.T) {
	const leaf = 24 * time.Hour
	const grace = time.Minute
	// Old and new anchors share a subject (as cert-manager's rotation does) but not a
	// key; an issuer from each.
	oldA := newCA(t, "weft-trust-anchor", 8760*time.Hour, nil)
	newA := newCA(t, "weft-trust-anchor", 8760*time.Hour, nil)
	shortA := newCA(t, "weft-trust-anchor", 2*time.Hour, nil)
	issOld := newCA(t, "weft-identity-issuer", 48*time.Hour, oldA)
	issNew := newCA(t, "weft-identity-issuer", 48*time.Hour, newA)
	stranger := newCA(t, "stranger", 8760*time.Hour, nil)
	issStranger := newCA(t, "weft-identity-issuer", 48*time.Hour, stranger)

	type want struct {
		anchors     []*x509.Certificate
		retain      []time.Time // per anchor; zero = in use
		issuerStale bool
		dropped     int
		err         error
	}
	cases := []struct {
		name string
		in   Input
		want want
	}{
		{
			name: "first reconcile publishes the anchor",
			in:   Input{Now: t0, Anchor: oldA.cert, Issuer: issOld.cert},
			want: want{anchors: []*x509.Certificate{oldA.cert}, retain: []time.Time{{}}},
		},
		{
			name: "issuer not issued yet still publishes the anchor",
			in:   Input{Now: t0, Anchor: oldA.cert},
			want: want{anchors: []*x509.Certificate{oldA.cert}, retain: []time.Time{{}}},
		},
		{
			name: "steady state is unchanged",
			in:   Input{Now: t0, Published: []Entry{{Cert: oldA.cert}}, Anchor: oldA.cert, Issuer: issOld.cert},
			want: want{anchors: []*x509.Certificate{oldA.cert}, retain: []time.Time{{}}},
		},
		{
			name: "anchor rotated, issuer still on the old one: old+new, issuer stale, old in use",
			in: Input{Now: t0, Published: []Entry{{Cert: oldA.cert}}, Anchor: newA.cert, Issuer: issOld.cert,
				LeafLifetime: leaf, Grace: grace},
			want: want{anchors: []*x509.Certificate{newA.cert, oldA.cert}, retain: []time.Time{{}, {}}, issuerStale: true},
		},
		{
			name: "issuer moved to the new anchor: old retained one leaf lifetime plus grace",
			in: Input{Now: t0, Published: []Entry{{Cert: newA.cert}, {Cert: oldA.cert}}, Anchor: newA.cert, Issuer: issNew.cert,
				LeafLifetime: leaf, Grace: grace},
			want: want{anchors: []*x509.Certificate{newA.cert, oldA.cert}, retain: []time.Time{{}, t0.Add(leaf + grace)}},
		},
		{
			name: "retention not over: old stays with the same deadline",
			in: Input{Now: t0.Add(leaf), Published: []Entry{{Cert: newA.cert}, {Cert: oldA.cert, RetainUntil: t0.Add(leaf + grace)}},
				Anchor: newA.cert, Issuer: issNew.cert, LeafLifetime: leaf, Grace: grace},
			want: want{anchors: []*x509.Certificate{newA.cert, oldA.cert}, retain: []time.Time{{}, t0.Add(leaf + grace)}},
		},
		{
			name: "retention over: new only",
			in: Input{Now: t0.Add(leaf + grace), Published: []Entry{{Cert: newA.cert}, {Cert: oldA.cert, RetainUntil: t0.Add(leaf + grace)}},
				Anchor: newA.cert, Issuer: issNew.cert, LeafLifetime: leaf, Grace: grace},
			want: want{anchors: []*x509.Certificate{newA.cert}, retain: []time.Time{{}}, dropped: 1},
		},
		{
			name: "issuer back on a retired anchor cancels its retention",
			in: Input{Now: t0, Published: []Entry{{Cert: newA.cert}, {Cert: oldA.cert, RetainUntil: t0.Add(time.Minute)}},
				Anchor: newA.cert, Issuer: issOld.cert, LeafLifetime: leaf, Grace: grace},
			want: want{anchors: []*x509.Certificate{newA.cert, oldA.cert}, retain: []time.Time{{}, {}}, issuerStale: true},
		},
		{
			name: "retention is capped by the retired anchor's own expiry",
			in: Input{Now: t0, Published: []Entry{{Cert: shortA.cert}}, Anchor: newA.cert, Issuer: issNew.cert,
				LeafLifetime: leaf, Grace: grace},
			want: want{anchors: []*x509.Certificate{newA.cert, shortA.cert}, retain: []time.Time{{}, shortA.cert.NotAfter}},
		},
		{
			name: "an expired retired anchor is dropped at once",
			in: Input{Now: t0.Add(3 * time.Hour), Published: []Entry{{Cert: shortA.cert}}, Anchor: newA.cert, Issuer: issNew.cert,
				LeafLifetime: leaf, Grace: grace},
			want: want{anchors: []*x509.Certificate{newA.cert}, retain: []time.Time{{}}, dropped: 1},
		},
		{
			name: "an issuer from an unknown CA is an error",
			in:   Input{Now: t0, Published: []Entry{{Cert: oldA.cert}}, Anchor: oldA.cert, Issuer: issStranger.cert},
			want: want{anchors: []*x509.Certificate{oldA.cert}, retain: []time.Time{{}}, err: ErrIssuerUntrusted},
		},
		{
			name: "the current anchor appears once even if published before",
			in:   Input{Now: t0, Published: []Entry{{Cert: oldA.cert}, {Cert: oldA.cert}}, Anchor: oldA.cert, Issuer: issOld.cert},
			want: want{anchors: []*x509.Certificate{oldA.cert}, retain: []time.Time{{}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Compute(tc.in)
			if !errors.Is(err, tc.want.err) {
				t.Fatalf("error = %v, want %v", err, tc.want.err)
			}
			if len(res.Entries) != len(tc.want.anchors) {
				t.Fatalf("bundle has %d anchors, want %d", len(res.Entries), len(tc.want.anchors))
			}
			for i, e := range res.Entries {
				if !e.Cert.Equal(tc.want.anchors[i]) {
					t.Errorf("anchor %d is %s, want %s", i, Fingerprint(e.Cert)[:12], Fingerprint(tc.want.anchors[i])[:12])
				}
				if !e.RetainUntil.Equal(tc.want.retain[i]) {
					t.Errorf("anchor %d RetainUntil = %v, want %v", i, e.RetainUntil, tc.want.retain[i])
				}
			}
			if res.IssuerStale != tc.want.issuerStale {
				t.Errorf("IssuerStale = %v, want %v", res.IssuerStale, tc.want.issuerStale)
			}
			if len(res.Dropped) != tc.want.dropped {
				t.Errorf("dropped %d anchors, want %d", len(res.Dropped), tc.want.dropped)
			}
		})
	}
}

// TestRotationNeverStrandsALeaf walks a whole rotation step by step and checks, at every
// step, that a leaf issued before the rotation verifies against the bundle for as long
// as it is valid, and a leaf from the new issuer verifies too.
func TestRotationNeverStrandsALeaf(t *testing.T) {
	const leafLife = 24 * time.Hour
	oldA := newCA(t, "weft-trust-anchor", 8760*time.Hour, nil)
	newA := newCA(t, "weft-trust-anchor", 8760*time.Hour, nil)
	issOld := newCA(t, "weft-identity-issuer", 48*time.Hour, oldA)
	issNew := newCA(t, "weft-identity-issuer", 48*time.Hour, newA)
	oldLeaf := newCA(t, "leaf", leafLife, issOld) // issued at t0 under the old chain

	published := []Entry{{Cert: oldA.cert}}
	steps := []struct {
		name   string
		at     time.Duration
		anchor *ca
		issuer *ca
		want   int // anchors in the bundle
	}{
		{"before rotation", 0, oldA, issOld, 1},
		{"anchor renewed", time.Hour, newA, issOld, 2},
		{"issuer renewed", 2 * time.Hour, newA, issNew, 2},
		{"leaf half-life", 12 * time.Hour, newA, issNew, 2},
		{"old leaf just before expiry", leafLife - time.Minute, newA, issNew, 2},
		{"old leaf expired, retention over", 2*time.Hour + leafLife + 2*time.Minute, newA, issNew, 1},
	}
	for _, s := range steps {
		now := t0.Add(s.at)
		res, err := Compute(Input{Now: now, Published: published, Anchor: s.anchor.cert, Issuer: s.issuer.cert,
			LeafLifetime: leafLife, Grace: time.Minute})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if len(res.Entries) != s.want {
			t.Fatalf("%s: %d anchors, want %d", s.name, len(res.Entries), s.want)
		}
		roots, err := ParsePEM(PEM(res.Entries))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		inter := x509.NewCertPool()
		inter.AddCert(issOld.cert)
		if now.Before(oldLeaf.cert.NotAfter) {
			if _, err := oldLeaf.cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now}); err != nil {
				t.Fatalf("%s: the pre-rotation leaf, still valid, fails against the bundle: %v", s.name, err)
			}
		}
		if s.issuer == issNew {
			if _, err := issNew.cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now}); err != nil {
				t.Fatalf("%s: the new issuer fails against the bundle: %v", s.name, err)
			}
		}
		// Round-trip through the published form, as the reconciler does.
		published, err = Decode(PEM(res.Entries), EncodeRetention(res.Entries))
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestDecodeRejectsBadRetention(t *testing.T) {
	cases := []struct{ name, retention string }{
		{"no equals sign", "abc"},
		{"bad time", "abc=yesterday"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(nil, tc.retention); err == nil {
				t.Fatalf("Decode accepted %q", tc.retention)
			}
		})
	}
}
