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

package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/weftmesh/weft/internal/peertls"
)

// Rejection reasons: the values of the rejected metric's reason label.
const (
	ReasonMalformedRequest = "malformed_request"
	ReasonMalformedCSR     = "malformed_csr"
	ReasonUnsupportedKey   = "unsupported_key"
	ReasonExtraSANs        = "extra_sans"
	ReasonCARequested      = "ca_requested"
	ReasonCSRIdentity      = "csr_identity_mismatch"
	ReasonTokenRejected    = "token_rejected"
	ReasonNotSA            = "not_service_account"
	ReasonIdentityMismatch = "identity_mismatch"
	ReasonUnavailable      = "unavailable"
	// The token failed the local checks (never sent to the API server).
	ReasonTokenMalformed = "token_malformed"
	ReasonTokenAudience  = "token_audience"
	ReasonTokenExpired   = "token_expired"
	// Too many calls from one source IP, or too many TokenReviews in all.
	ReasonRateLimited = "rate_limited"
	ReasonReviewsBusy = "reviews_busy"
	// The issuer has less than a leaf lifetime left, or is not valid yet.
	ReasonIssuerExpiring    = "issuer_expiring"
	ReasonIssuerNotYetValid = "issuer_not_yet_valid"
)

// rejection is a refused request: the reason label, a message for the caller and, when
// the caller must not learn it, the detail for the log.
type rejection struct {
	reason string
	msg    string
	detail string
}

func (r *rejection) Error() string { return r.msg }

// hide keeps the message for the log and gives the caller msg instead.
func (r *rejection) hide(msg string) *rejection {
	return &rejection{reason: r.reason, msg: msg, detail: r.msg}
}

func reject(reason, format string, args ...any) *rejection {
	return &rejection{reason: reason, msg: fmt.Sprintf(format, args...)}
}

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// SPIFFEID is the identity of a ServiceAccount in a trust domain (peertls.WorkloadID).
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return peertls.WorkloadID(trustDomain, namespace, serviceAccount)
}

// checkCSR parses a DER (or PEM) PKCS#10 request and checks that it asks for exactly
// the URI want and nothing a workload must not have: other names, a CA bit, a key
// other than ECDSA P-256 or Ed25519.
func checkCSR(raw []byte, want string) (*x509.CertificateRequest, *rejection) {
	if b, _ := pem.Decode(raw); b != nil {
		raw = b.Bytes
	}
	csr, err := x509.ParseCertificateRequest(raw)
	if err != nil {
		return nil, reject(ReasonMalformedCSR, "the certificate signing request is not a valid PKCS#10 request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, reject(ReasonMalformedCSR, "the certificate signing request's signature does not verify: %v", err)
	}
	switch pub := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, reject(ReasonUnsupportedKey, "the key is ECDSA on %s; use P-256 or Ed25519", pub.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, reject(ReasonUnsupportedKey, "the key is %T; use ECDSA P-256 or Ed25519", csr.PublicKey)
	}
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		if _, err := asn1.Unmarshal(ext.Value, &bc); err != nil {
			return nil, reject(ReasonMalformedCSR, "the basicConstraints extension is malformed: %v", err)
		}
		if bc.IsCA {
			return nil, reject(ReasonCARequested, "the request asks for a CA certificate; workload certificates are never CAs")
		}
	}
	var extra []string
	for _, n := range csr.DNSNames {
		extra = append(extra, "DNS:"+n)
	}
	for _, ip := range csr.IPAddresses {
		extra = append(extra, "IP:"+ip.String())
	}
	for _, e := range csr.EmailAddresses {
		extra = append(extra, "email:"+e)
	}
	var uris []string
	for _, u := range csr.URIs {
		uris = append(uris, u.String())
	}
	switch {
	case len(uris) == 0:
		return nil, reject(ReasonCSRIdentity, "the request has no URI SAN; it must carry exactly %s", want)
	case len(uris) == 1 && uris[0] != want:
		return nil, reject(ReasonCSRIdentity, "the request's URI SAN is %s, not the requested identity %s", uris[0], want)
	case len(uris) > 1:
		for _, u := range uris {
			if u != want {
				extra = append(extra, "URI:"+u)
			}
		}
		if len(extra) == 0 {
			extra = append(extra, "URI:"+want+" (repeated)")
		}
	}
	if len(extra) > 0 {
		return nil, reject(ReasonExtraSANs, "the request carries subject alternative names besides %s: %s; remove them", want, strings.Join(extra, ", "))
	}
	return csr, nil
}
