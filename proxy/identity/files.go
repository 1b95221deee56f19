package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
)

// Files loads the certificate, key and roots from PEM files and reloads them when
// they change (Kubernetes updates mounted Secrets by swapping a symlink, so the files
// are polled by content identity rather than watched).
type Files struct {
	CertPath, KeyPath, RootsPath string
	// Interval between checks for changes. Default 2s.
	Interval time.Duration
	Store    *Store
	Log      logr.Logger

	last [3]fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

// Load reads the files once and, if they are consistent, installs them in the Store.
func (f *Files) Load() error {
	certPEM, err := os.ReadFile(f.CertPath)
	if err != nil {
		return fmt.Errorf("read identity certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(f.KeyPath)
	if err != nil {
		return fmt.Errorf("read identity key: %w", err)
	}
	rootsPEM, err := os.ReadFile(f.RootsPath)
	if err != nil {
		return fmt.Errorf("read trust roots: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load identity key pair: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootsPEM) {
		return errors.New("trust roots: no PEM certificate found")
	}
	b, err := NewBundle(cert, roots)
	if err != nil {
		return err
	}
	f.Store.Set(b)
	f.Log.Info("Loaded identity", "id", b.ID, "notAfter", b.Leaf.NotAfter)
	return nil
}

// Run checks the files every Interval and reloads on change until ctx ends. A failed
// reload keeps the previous bundle.
func (f *Files) Run(ctx context.Context) {
	iv := f.Interval
	if iv <= 0 {
		iv = 2 * time.Second
	}
	f.last = f.stamps()
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := f.stamps()
		if s == f.last {
			continue
		}
		if err := f.Load(); err != nil {
			f.Log.Error(err, "Reloading identity files failed, keeping the previous certificate")
			continue
		}
		f.last = s
	}
}

func (f *Files) stamps() [3]fileStamp {
	var out [3]fileStamp
	for i, p := range []string{f.CertPath, f.KeyPath, f.RootsPath} {
		out[i] = stamp(p)
	}
	return out
}
