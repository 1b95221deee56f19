package netns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CA is a throwaway trust anchor that issues SPIFFE leaf certificates the way Weft's
// identity issuer does: ECDSA P-256 keys, the SPIFFE ID as the only URI SAN.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// NewCA makes a self-signed ECDSA P-256 CA valid for a day.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "weft test trust anchor"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA: %w", err)
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// Leaf is an issued identity: PEM certificate and PKCS#8 key.
type Leaf struct {
	ID      string
	CertPEM []byte
	KeyPEM  []byte
}

// Issue signs a leaf for the SPIFFE ID spiffeID, valid from notBefore to notAfter,
// usable as TLS server and client certificate. dnsNames, if any, are added as DNS SANs
// for peers that check a host name rather than a SPIFFE ID (the benchmark's nginx and
// Caddy pairs).
func (ca *CA) Issue(spiffeID string, notBefore, notAfter time.Time, dnsNames ...string) (*Leaf, error) {
	u, err := url.Parse(spiffeID)
	if err != nil || u.Scheme != "spiffe" {
		return nil, fmt.Errorf("invalid SPIFFE ID %q", spiffeID)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate leaf key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		URIs:         []*url.URL{u},
		DNSNames:     dnsNames,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign leaf %s: %w", spiffeID, err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal leaf key: %w", err)
	}
	return &Leaf{
		ID:      spiffeID,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
	}, nil
}

// IdentityFiles are the paths weft-proxy's files identity mode reads.
type IdentityFiles struct {
	Cert, Key, Roots string
}

// Args are the weft-proxy flags that point at the files.
func (f IdentityFiles) Args() []string {
	return []string{"--identity-mode", "files", "--identity-cert", f.Cert, "--identity-key", f.Key, "--identity-roots", f.Roots}
}

// WriteIdentity writes leaf and the CA's certificate into dir as <name>.crt,
// <name>.key and ca.crt. The files are readable by everyone because the proxy runs as
// an unprivileged UID; they are throwaway test keys.
func (ca *CA) WriteIdentity(dir, name string, leaf *Leaf) (IdentityFiles, error) {
	f := IdentityFiles{
		Cert:  filepath.Join(dir, name+".crt"),
		Key:   filepath.Join(dir, name+".key"),
		Roots: filepath.Join(dir, "ca.crt"),
	}
	for path, data := range map[string][]byte{f.Cert: leaf.CertPEM, f.Key: leaf.KeyPEM, f.Roots: ca.PEM} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return IdentityFiles{}, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return f, nil
}
