package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Binaries builds Go commands once per test binary into a directory every user can
// read and execute (the proxy runs as an unprivileged UID, and t.TempDir is private to
// root).
type Binaries struct {
	Dir string

	mu    sync.Mutex
	built map[string]string
	errs  map[string]error
}

// NewBinaries creates the shared directory.
func NewBinaries() (*Binaries, error) {
	dir, err := os.MkdirTemp("", "weft-netns-bin-")
	if err != nil {
		return nil, fmt.Errorf("make binary dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chmod binary dir: %w", err)
	}
	return &Binaries{Dir: dir, built: map[string]string{}, errs: map[string]error{}}, nil
}

// Get builds pkg (an import path, or ./cmd/... relative to the module root) and
// returns the path of the binary. A failed build is remembered, so every test that
// needs it fails with the same message instead of rebuilding.
func (b *Binaries) Get(pkg string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.built[pkg]; ok {
		return p, nil
	}
	if err, ok := b.errs[pkg]; ok {
		return "", err
	}
	out := filepath.Join(b.Dir, filepath.Base(pkg))
	root, err := ModuleRoot()
	if err == nil {
		err = buildInto(root, out, pkg)
	}
	if err != nil {
		b.errs[pkg] = err
		return "", err
	}
	b.built[pkg] = out
	return out, nil
}

// Remove deletes the directory.
func (b *Binaries) Remove() { os.RemoveAll(b.Dir) }

func buildInto(root, out, pkg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, strings.TrimSpace(string(o)))
	}
	return nil
}

// ModuleRoot is the directory of the main module's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}
