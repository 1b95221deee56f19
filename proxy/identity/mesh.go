package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/internal/peertls"
)

// Renewal timing. A certificate is renewed at RenewAtPercent of its life (the Mesh's
// spec.identity.workload.renewAtPercent, default 70), moved by a random amount of up to
// RenewJitterPercent points either way and never past RenewMaxPercent. Without the
// jitter every proxy of a rollout, started within seconds, would renew within the same
// seconds once a day, and the identity service (and TokenReview behind it) would see
// the whole rollout at once; with +/-5 points of a 24h leaf the renewals of proxies
// started together spread evenly over 2.4 hours. The cap keeps at least 10% of the life
// (2.4h of a 24h leaf) for retries when the identity service is unavailable.
const (
	DefaultRenewAtPercent = 70
	RenewJitterPercent    = 5
	RenewMaxPercent       = 90
	// RenewMinPercent is the lowest renewAtPercent accepted (the Mesh's minimum).
	RenewMinPercent = 50
)

// RenewalPoint is when a certificate valid from notBefore to notAfter is renewed:
// percent of its life, moved by (2u-1) * RenewJitterPercent points for u in [0, 1),
// clamped to at most RenewMaxPercent and at least RenewMinPercent-RenewJitterPercent.
// It is pure so that tests can drive u from a seeded source.
func RenewalPoint(notBefore, notAfter time.Time, percent int, u float64) time.Time {
	at := float64(percent) + (2*u-1)*RenewJitterPercent
	at = min(max(at, RenewMinPercent-RenewJitterPercent), RenewMaxPercent)
	life := notAfter.Sub(notBefore)
	return notBefore.Add(time.Duration(float64(life) * at / 100))
}

// Mesh obtains this proxy's certificate from the identity service: it makes an
// ECDSA P-256 key in memory (it never leaves the process), sends a CSR with the
// projected ServiceAccount token, installs the returned chain, and renews at
// RenewAtPercent of the certificate's life, with jitter (see RenewalPoint). Trust
// roots come from a file and are reloaded when it changes; they also authenticate the
// identity service.
type Mesh struct {
	// Addr is the identity service, host:port.
	Addr string
	// ServerName is what the identity service's certificate must prove: a DNS name
	// (default: Addr's host) or a spiffe:// ID.
	ServerName string
	// ID is this proxy's SPIFFE ID.
	ID string
	// TokenPath is the projected ServiceAccount token (audience identity.weft.dev),
	// read anew for every request because the kubelet rotates it.
	TokenPath string
	// RootsPath is the PEM trust bundle.
	RootsPath string
	Store     *Store
	Log       logr.Logger
	// Interval is how often the roots file is checked. Default 2s.
	Interval time.Duration
	// MaxBackoff caps the wait between failed attempts. Default 30s.
	MaxBackoff time.Duration
	// RenewAtPercent is the share of a certificate's life after which it is renewed,
	// RenewMinPercent to RenewMaxPercent. Default DefaultRenewAtPercent.
	RenewAtPercent int
	// Jitter returns a number in [0, 1) that places each renewal within the jitter
	// band. Default: math/rand/v2's Float64 (tests pass a seeded source).
	Jitter func() float64

	key *ecdsa.PrivateKey
}

// Run obtains and renews the certificate until ctx ends.
func (m *Mesh) Run(ctx context.Context) {
	var err error
	if m.key == nil {
		m.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			m.Log.Error(err, "Cannot generate identity key")
			return
		}
	}
	iv := m.Interval
	if iv <= 0 {
		iv = 2 * time.Second
	}
	maxBackoff := m.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	renewAt := m.RenewAtPercent
	if renewAt == 0 {
		renewAt = DefaultRenewAtPercent
	}
	jitter := m.Jitter
	if jitter == nil {
		jitter = mrand.Float64
	}
	rootsStamp := stamp(m.RootsPath)
	tick := time.NewTicker(iv)
	defer tick.Stop()
	backoff := time.Second
	var renew <-chan time.Time // nil: certify now
	for {
		if renew == nil {
			err := m.certify(ctx)
			var wait time.Duration
			if err != nil {
				m.Log.Error(err, "Obtaining identity certificate failed, retrying", "in", backoff)
				wait = backoff
				backoff = min(2*backoff, maxBackoff)
				// Never wait past the current certificate's expiry.
				if exp := m.Store.Expiry(); !exp.IsZero() {
					wait = min(wait, max(time.Until(exp)/2, time.Second))
				}
			} else {
				backoff = time.Second
				leaf := m.Store.Current().Leaf
				at := RenewalPoint(leaf.NotBefore, leaf.NotAfter, renewAt, jitter())
				wait = max(time.Until(at), 0)
				m.Log.Info("Obtained identity certificate", "id", m.ID, "notAfter", leaf.NotAfter, "renewIn", wait.Round(time.Second))
			}
			renew = time.After(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-renew:
			renew = nil
		case <-tick.C:
			if s := stamp(m.RootsPath); s != rootsStamp {
				rootsStamp = s
				m.reloadRoots()
			}
		}
	}
}

func (m *Mesh) roots() (*x509.CertPool, error) {
	pem, err := os.ReadFile(m.RootsPath)
	if err != nil {
		return nil, fmt.Errorf("read trust roots: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("trust roots: no PEM certificate found")
	}
	return pool, nil
}

// reloadRoots swaps the trust bundle under the current certificate (trust anchor
// rotation adds the new anchor before the old one goes away).
func (m *Mesh) reloadRoots() {
	pool, err := m.roots()
	if err != nil {
		m.Log.Error(err, "Reloading trust roots failed, keeping the previous ones")
		return
	}
	if cur := m.Store.Current(); cur != nil {
		nb := *cur
		nb.Roots = pool
		m.Store.Set(&nb)
	}
	m.Log.Info("Reloaded trust roots")
}

// ensureKeyAndCertify makes the key if needed and certifies once.
func (m *Mesh) ensureKeyAndCertify(ctx context.Context) error {
	if m.key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		m.key = k
	}
	return m.certify(ctx)
}

// certify performs one Certify call and installs the result.
func (m *Mesh) certify(ctx context.Context) error {
	pool, err := m.roots()
	if err != nil {
		return err
	}
	token, err := os.ReadFile(m.TokenPath)
	if err != nil {
		return fmt.Errorf("read ServiceAccount token: %w", err)
	}
	u, err := url.Parse(m.ID)
	if err != nil {
		return fmt.Errorf("identity %q: %w", m.ID, err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, m.key)
	if err != nil {
		return fmt.Errorf("create CSR: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	leafDER, inters, err := certifyCall(cctx, m.Addr, m.serverTLS(pool), m.ID, []byte(strings.TrimSpace(string(token))), csr)
	if err != nil {
		return fmt.Errorf("certify: %w", err)
	}
	chain := append([][]byte{leafDER}, inters...)
	b, err := NewBundle(tls.Certificate{Certificate: chain, PrivateKey: m.key}, pool)
	if err != nil {
		return fmt.Errorf("identity service answer: %w", err)
	}
	if b.ID != m.ID {
		return fmt.Errorf("identity service issued %q, asked for %q", b.ID, m.ID)
	}
	pub, ok := b.Leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&m.key.PublicKey) {
		return errors.New("identity service answer does not certify our key")
	}
	// The chain must verify against our own roots, or peers would refuse it.
	inter := x509.NewCertPool()
	for _, der := range chain[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := b.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("issued certificate does not chain to the trust roots: %w", err)
	}
	m.Store.Set(b)
	return nil
}

// serverTLS authenticates the identity service against the trust roots
// (peertls.ClientConfig, as for the destination service); the proxy itself proves who
// it is with the token, not with a client certificate.
func (m *Mesh) serverTLS(pool *x509.CertPool) *tls.Config {
	name := m.ServerName
	if name == "" {
		name, _, _ = net.SplitHostPort(m.Addr)
	}
	return peertls.ClientConfig(peertls.ClientOptions{
		ServerName: name,
		Roots:      func() *x509.CertPool { return pool },
	})
}
