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

package validation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/inject"
)

func caPEM(t *testing.T, cn string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestTrustRootsCopy(t *testing.T) {
	anchor, next, rogue := caPEM(t, "anchor"), caPEM(t, "next anchor"), caPEM(t, "rogue")
	bundle := func(pem string) map[string]string { return map[string]string{inject.TrustRootsKey: pem} }
	published := bundle(anchor + next)
	cases := []struct {
		name      string
		copy      map[string]string
		published map[string]string
		want      string // "" accepts the copy
		wantErr   string
	}{
		{"the published bundle", bundle(anchor + next), published, "", ""},
		{"a copy not yet updated with a new anchor", bundle(anchor), published, "", ""},
		{"the anchors in another order", bundle(next + anchor), published, "", ""},
		{"a user's own CA", bundle(rogue), published,
			"holds a certificate (CN=rogue) that is not in the trust bundle weft-controller publishes (weft-system/weft-trust-roots)", ""},
		{"the published anchors plus a user's own", bundle(anchor + rogue), published, "CN=rogue", ""},
		{"not a bundle", bundle("hello"), published, "holds no readable trust bundle under " + inject.TrustRootsKey, ""},
		{"an empty copy", map[string]string{}, published, "holds no readable trust bundle", ""},
		{"the bundle under another key", map[string]string{"ca.crt": anchor}, published, "holds no readable trust bundle", ""},
		// Nothing is published yet (or the bundle is empty): no copy can be Weft's.
		{"an empty published bundle", bundle(anchor), bundle(""), "CN=anchor", ""},
		{"a published bundle that does not parse", bundle(anchor), bundle("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
			"", "parsing the published trust bundle weft-system/weft-trust-roots"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TrustRootsCopy(tc.copy, tc.published, "weft-system/weft-trust-roots")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("problem = %q, want %q", got, tc.want)
			}
		})
	}
}
