package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/go-logr/logr"
)

// Runner applies a Config to the current network namespace with the iptables binaries.
type Runner struct {
	// IPv4Binary and IPv6Binary name the binaries; "iptables" and "ip6tables" when
	// empty. Their save tools are the same names with "-save" appended, which holds
	// for the plain, -nft and -legacy variants Debian ships.
	IPv4Binary, IPv6Binary string
	// DryRun prints the commands without running them. The current state is still
	// read (iptables-save changes nothing) so the printed plan is what a real run
	// would do; when the binaries are missing an empty table is assumed.
	DryRun bool
	// Out receives one line per command, run or planned, prefixed with "+ " (or
	// "# dry-run: ").
	Out io.Writer
	// Log receives progress messages.
	Log logr.Logger
}

// ErrNotInstalled is wrapped by errors about a missing iptables binary.
var ErrNotInstalled = errors.New("iptables is not installed")

// Binary is the iptables binary the Runner uses for family f.
func (r Runner) Binary(f Family) string {
	if f == IPv6 {
		if r.IPv6Binary != "" {
			return r.IPv6Binary
		}
		return "ip6tables"
	}
	if r.IPv4Binary != "" {
		return r.IPv4Binary
	}
	return "iptables"
}

// Apply renders, plans and runs the rules of every family in c.
func (r Runner) Apply(ctx context.Context, c Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	for _, f := range c.Families() {
		if err := r.applyFamily(ctx, c, f); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

func (r Runner) applyFamily(ctx context.Context, c Config, f Family) error {
	bin := r.Binary(f)
	st, err := r.readState(ctx, bin)
	switch {
	case errors.Is(err, ErrNotInstalled) && r.DryRun:
		r.Log.Info("Binary not found, planning against an empty table", "binary", bin)
		st = State{Chains: map[string]bool{}}
	case err != nil:
		return err
	}
	cmds := Plan(bin, Render(c, f), st)
	r.Log.V(1).Info("Planned rules", "family", f.String(), "commands", len(cmds))
	for _, cmd := range cmds {
		if r.DryRun {
			fmt.Fprintf(r.out(), "# dry-run: %s\n", cmd)
			continue
		}
		fmt.Fprintf(r.out(), "+ %s\n", cmd)
		if _, err := run(ctx, cmd.Binary, cmd.Args...); err != nil {
			return err
		}
	}
	return nil
}

func (r Runner) out() io.Writer {
	if r.Out == nil {
		return io.Discard
	}
	return r.Out
}

// readState runs "<bin>-save -t nat" and parses it.
func (r Runner) readState(ctx context.Context, bin string) (State, error) {
	if _, err := exec.LookPath(bin); err != nil {
		return State{}, fmt.Errorf("%s not found in PATH (on Debian or Ubuntu: apt-get install iptables): %w: %w", bin, ErrNotInstalled, err)
	}
	text, err := Save(ctx, bin)
	if err != nil {
		return State{}, err
	}
	return ParseSave(text)
}

// Save returns the output of "<bin>-save -t nat": the nat table as iptables-restore
// would read it.
func Save(ctx context.Context, bin string) (string, error) {
	out, err := run(ctx, bin+"-save", "-t", Table)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%s not found in PATH (on Debian or Ubuntu: apt-get install iptables): %w: %w", name, ErrNotInstalled, err)
		}
		return nil, fmt.Errorf("%s %s: %w: %s", name, shellJoin(args), err, msg)
	}
	return stdout.Bytes(), nil
}
