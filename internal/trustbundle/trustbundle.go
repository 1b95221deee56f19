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

// Package trustbundle decides which trust anchors the mesh publishes. It is pure: the
// Mesh reconciler feeds it what it observed (the bundle it published last, the current
// anchor and identity issuer, the clock) and writes back what it returns.
//
// The rule that makes anchor rotation safe: an anchor stays in the bundle while anything
// still valid may chain to it. The identity issuer is checked directly (its signature);
// workload leaves cannot be listed, but they are signed by the issuer and live at most
// the workload lifetime, so once the issuer has moved to a new anchor the old one is
// retained for one more workload lifetime (plus a grace for the identity service to pick
// up the new issuer) and only then dropped.
package trustbundle

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Entry is one anchor in a published bundle.
type Entry struct {
	// Cert is the anchor certificate.
	Cert *x509.Certificate
	// RetainUntil is zero while the anchor is in use (the current anchor, or the one the
	// identity issuer chains to). Once nothing chains to it, it is when the anchor may
	// be dropped: the last moment a leaf signed under it can still be valid.
	RetainUntil time.Time
}

// Input is what the reconciler observed.
type Input struct {
	// Now is the reconciler's clock.
	Now time.Time
	// Published is the bundle published so far (empty on the first reconcile).
	Published []Entry
	// Anchor is the current trust anchor (from the anchor Certificate's Secret).
	Anchor *x509.Certificate
	// Issuer is the current identity issuer certificate; nil while it is not issued.
	Issuer *x509.Certificate
	// LeafLifetime is the longest a workload certificate lives.
	LeafLifetime time.Duration
	// Grace is added to the retention of a retired anchor: the time the identity service
	// may take to load a renewed issuer, plus clock skew.
	Grace time.Duration
}

// Result is the bundle to publish and what the reconciler must do next.
type Result struct {
	// Entries is the bundle to publish, current anchor first, each anchor once.
	Entries []Entry
	// IssuerAnchor is the anchor the issuer chains to (nil if Issuer is nil or chains to
	// none of the anchors).
	IssuerAnchor *x509.Certificate
	// IssuerStale is true when the issuer chains to an anchor other than the current
	// one: the issuer must be re-issued by the current anchor before the old anchor can
	// go.
	IssuerStale bool
	// Dropped lists the anchors removed by this computation.
	Dropped []*x509.Certificate
	// NextChange is when the result changes without any new observation (a retained
	// anchor's RetainUntil or an anchor's expiry); zero if never.
	NextChange time.Time
}

// ErrIssuerUntrusted means the issuer chains to no anchor in the bundle: publishing the
// bundle would make every new leaf unverifiable.
var ErrIssuerUntrusted = errors.New("the identity issuer does not chain to any trust anchor")

// Compute returns the bundle to publish.
func Compute(in Input) (Result, error) {
	if in.Anchor == nil {
		return Result{}, errors.New("no current trust anchor")
	}
	var res Result
	seen := map[string]bool{}
	add := func(e Entry) {
		res.Entries = append(res.Entries, e)
		seen[Fingerprint(e.Cert)] = true
	}
	add(Entry{Cert: in.Anchor})
	if in.Issuer != nil && chainsTo(in.Issuer, in.Anchor) {
		res.IssuerAnchor = in.Anchor
	}

	for _, e := range in.Published {
		fp := Fingerprint(e.Cert)
		if seen[fp] {
			continue
		}
		if !in.Now.Before(e.Cert.NotAfter) {
			// An expired anchor verifies nothing.
			res.Dropped = append(res.Dropped, e.Cert)
			continue
		}
		if in.Issuer != nil && res.IssuerAnchor == nil && chainsTo(in.Issuer, e.Cert) {
			// The issuer still chains here: in use, however long it has been retained.
			res.IssuerAnchor = e.Cert
			res.IssuerStale = true
			add(Entry{Cert: e.Cert})
			continue
		}
		retain := e.RetainUntil
		if retain.IsZero() {
			// Nothing chains to it from now on; leaves already signed under it live
			// at most one more leaf lifetime.
			retain = in.Now.Add(in.LeafLifetime + in.Grace)
		}
		if retain.After(e.Cert.NotAfter) {
			retain = e.Cert.NotAfter
		}
		if !in.Now.Before(retain) {
			res.Dropped = append(res.Dropped, e.Cert)
			continue
		}
		add(Entry{Cert: e.Cert, RetainUntil: retain})
	}

	for _, e := range res.Entries {
		for _, t := range []time.Time{e.RetainUntil, e.Cert.NotAfter} {
			if !t.IsZero() && (res.NextChange.IsZero() || t.Before(res.NextChange)) {
				res.NextChange = t
			}
		}
	}
	if in.Issuer != nil && res.IssuerAnchor == nil {
		return res, ErrIssuerUntrusted
	}
	return res, nil
}

// chainsTo reports whether cert is signed by anchor's key.
func chainsTo(cert, anchor *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, anchor.RawSubject) && cert.CheckSignatureFrom(anchor) == nil
}

// Fingerprint is the hex SHA-256 of the certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// PEM encodes the bundle's certificates, in order.
func PEM(entries []Entry) []byte {
	var buf bytes.Buffer
	for _, e := range entries {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: e.Cert.Raw})
	}
	return buf.Bytes()
}

// ParsePEM decodes every CERTIFICATE block of data.
func ParsePEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing a bundle certificate: %w", err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// EncodeRetention encodes the RetainUntil of the retired entries as
// "<fingerprint>=<RFC 3339>" pairs separated by commas, sorted, for an annotation.
func EncodeRetention(entries []Entry) string {
	var parts []string
	for _, e := range entries {
		if !e.RetainUntil.IsZero() {
			parts = append(parts, Fingerprint(e.Cert)+"="+e.RetainUntil.UTC().Format(time.RFC3339Nano))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Decode rebuilds published entries from the bundle PEM and the retention annotation.
func Decode(bundlePEM []byte, retention string) ([]Entry, error) {
	certs, err := ParsePEM(bundlePEM)
	if err != nil {
		return nil, err
	}
	until := map[string]time.Time{}
	for _, part := range strings.Split(retention, ",") {
		if part == "" {
			continue
		}
		fp, ts, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("retention entry %q: want <fingerprint>=<time>", part)
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return nil, fmt.Errorf("retention entry %q: %w", part, err)
		}
		until[fp] = t
	}
	entries := make([]Entry, 0, len(certs))
	for _, c := range certs {
		entries = append(entries, Entry{Cert: c, RetainUntil: until[Fingerprint(c)]})
	}
	return entries, nil
}
