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

package controllers

import (
	"crypto/x509"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRenewalProblem: alarms follow cert-manager's renewal time, not a share of life.
func TestRenewalProblem(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca := func(life time.Duration) *x509.Certificate {
		return &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(life)}
	}
	crt := func(renewBefore time.Duration) *cmv1.Certificate {
		return &cmv1.Certificate{Spec: cmv1.CertificateSpec{RenewBefore: &metav1.Duration{Duration: renewBefore}}}
	}
	anchor, anchorCrt := ca(8760*time.Hour), crt(1440*time.Hour)
	issuer, issuerCrt := ca(720*time.Hour), crt(480*time.Hour)
	anchorRenewal := t0.Add(8760*time.Hour - 1440*time.Hour)
	issuerRenewal := t0.Add(240 * time.Hour)
	disabled := crt(480 * time.Hour)
	disabled.Spec.Renewal = &cmv1.CertificateRenewal{Policy: cmv1.CertificateRenewalPolicyDisabled}
	cases := []struct {
		name     string
		crt      *cmv1.Certificate
		cert     *x509.Certificate
		minLife  time.Duration
		now      time.Time
		reason   string
		wantWake time.Time
	}{
		// The old rule warned from 80% of life (7008h), 13 days before cert-manager
		// was due to renew at 7320h.
		{"healthy anchor in the last 20% of its life, before its renewal time", anchorCrt, anchor, 0, t0.Add(7100 * time.Hour), "", anchorRenewal.Add(time.Hour)},
		{"anchor renewal 30m late: within the grace", anchorCrt, anchor, 0, anchorRenewal.Add(30 * time.Minute), "", anchorRenewal.Add(time.Hour)},
		{"anchor renewal 61m late", anchorCrt, anchor, 0, anchorRenewal.Add(61 * time.Minute), ReasonRenewalOverdue, time.Time{}},
		{"healthy issuer", issuerCrt, issuer, 24 * time.Hour, t0.Add(time.Hour), "", issuerRenewal.Add(time.Hour)},
		{"issuer renewal overdue", issuerCrt, issuer, 24 * time.Hour, issuerRenewal.Add(2 * time.Hour), ReasonRenewalOverdue, time.Time{}},
		{"issuer with less than a leaf lifetime left", issuerCrt, issuer, 24 * time.Hour, t0.Add(697 * time.Hour), ReasonTooCloseToExpiry, time.Time{}},
		{"expired", issuerCrt, issuer, 24 * time.Hour, t0.Add(720 * time.Hour), ReasonExpired, time.Time{}},
		{"not yet valid", issuerCrt, issuer, 24 * time.Hour, t0.Add(-time.Minute), ReasonNotYetValid, time.Time{}},
		// renewBefore longer than the certificate: cert-manager renews at 2/3 of its
		// life (40m of 1h), the grace is a tenth of the 20m left.
		{"short certificate, renewal 1m late", crt(480 * time.Hour), ca(time.Hour), 0, t0.Add(41 * time.Minute), "", t0.Add(42 * time.Minute)},
		{"short certificate, renewal 3m late", crt(480 * time.Hour), ca(time.Hour), 0, t0.Add(43 * time.Minute), ReasonRenewalOverdue, time.Time{}},
		{"renewal disabled: only expiry counts", disabled, issuer, 24 * time.Hour, issuerRenewal.Add(48 * time.Hour), "", t0.Add(696 * time.Hour)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reason, msg, wake := renewalProblem(tc.crt, tc.cert, tc.minLife, tc.now, "The certificate", "check cert-manager")
			if reason != tc.reason {
				t.Fatalf("reason = %q (%s), want %q", reason, msg, tc.reason)
			}
			if reason != "" && msg == "" {
				t.Errorf("no message")
			}
			if !wake.Equal(tc.wantWake) {
				t.Errorf("wake = %v, want %v", wake, tc.wantWake)
			}
		})
	}
}
