// Package netns creates throwaway Linux network namespaces for tests: "pods" joined by
// veth pairs, with addresses from private test ranges that exist only inside the
// namespaces, processes started inside them (optionally as another UID), sockets
// opened inside them, and a raw capture of what crosses a veth.
//
// Every namespace is named weft-test-<pid>-<name>, so a later run can tell which
// namespaces were left behind by a crashed run (their pid is gone) and remove them.
// It needs root and the `ip` tool (iproute2).
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace this package creates.
const Prefix = "weft-test-"

const runDir = "/run/netns"

// NS is one network namespace.
type NS struct {
	Name string

	mu    sync.Mutex
	procs []*exec.Cmd
}

// RequireRoot skips the test with a clear message unless it runs as root: namespaces,
// veth pairs and iptables all need CAP_NET_ADMIN.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: network-namespace tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); run `go test` as root")
	}
}

// CleanupStale removes weft-test-* namespaces whose creating process is gone, after
// killing whatever still runs inside them. It is safe to call at the start of every
// test binary.
func CleanupStale() error {
	entries, err := os.ReadDir(runDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, Prefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, Prefix), "-")
		if pid, err := strconv.Atoi(pidStr); err == nil && pid != os.Getpid() && processAlive(pid) {
			continue // another run's namespace, still in use
		}
		if err := deleteNS(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func processAlive(pid int) bool {
	return unix.Kill(pid, 0) == nil
}

// deleteNS kills the processes still inside a namespace and removes it.
func deleteNS(name string) error {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		// Never ourselves: a thread of this process may sit in the namespace (see Do).
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// New creates the namespace weft-test-<pid>-<name> with its loopback up, and removes
// it (killing the processes started in it) when the test ends.
func New(t testing.TB, name string) *NS {
	t.Helper()
	n := &NS{Name: fmt.Sprintf("%s%d-%s", Prefix, os.Getpid(), name)}
	if _, err := os.Stat(filepath.Join(runDir, n.Name)); err == nil {
		if err := deleteNS(n.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := Run(context.Background(), "ip", "netns", "add", n.Name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.stopAll()
		if err := deleteNS(n.Name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	n.MustIP(t, "link", "set", "lo", "up")
	return n
}

// Run runs a command in the test's own namespace and returns its combined output in
// the error.
func Run(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Exec runs a command inside the namespace (as root) and returns its output.
func (n *NS) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	full := append([]string{"netns", "exec", n.Name, name}, args...)
	out, err := exec.CommandContext(ctx, "ip", full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("in %s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// MustIP runs `ip <args>` inside the namespace and fails the test on error.
func (n *NS) MustIP(t testing.TB, args ...string) {
	t.Helper()
	if _, err := n.Exec(context.Background(), "ip", args...); err != nil {
		t.Fatal(err)
	}
}

// Link joins two namespaces with a veth pair whose ends are both called ifName, and
// gives each end its addresses (CIDR notation, IPv4 or IPv6). IPv6 addresses skip
// duplicate address detection so they are usable at once.
func Link(t testing.TB, a, b *NS, ifName string, aAddrs, bAddrs []string) {
	t.Helper()
	if err := Run(context.Background(), "ip", "link", "add", ifName, "netns", a.Name, "type", "veth",
		"peer", "name", ifName, "netns", b.Name); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		ns    *NS
		addrs []string
	}{{a, aAddrs}, {b, bAddrs}} {
		for _, addr := range side.addrs {
			args := []string{"addr", "add", addr, "dev", ifName}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			side.ns.MustIP(t, args...)
		}
		side.ns.MustIP(t, "link", "set", ifName, "up")
	}
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn creates belong
// to the namespace for their whole life, and a process fn starts is born in it; any
// goroutine fn starts runs outside it. The thread is never returned to the scheduler:
// it ends with the goroutine, so no other goroutine can inherit its namespace.
//
// The Go runtime cannot end the main thread; it keeps it, wedged, instead. Programs
// using Do must therefore keep their main goroutine on the main thread
// (runtime.LockOSThread in an init function), so that Do never runs there.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: exiting while locked destroys the thread.
		fd, err := unix.Open(filepath.Join(runDir, n.Name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", n.Name, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Start starts cmd inside the namespace. cmd.SysProcAttr.Credential, when set, makes
// the process run as that user. The process is killed when the test ends if it still
// runs; Wait is left to the caller (or to that cleanup).
func (n *NS) Start(cmd *exec.Cmd) error {
	// No Pdeathsig: it fires when the creating thread exits, and Do's thread exits
	// right after the start. Processes of a crashed run are killed by CleanupStale.
	if err := n.Do(cmd.Start); err != nil {
		return fmt.Errorf("start %s in %s: %w", cmd.Path, n.Name, err)
	}
	n.mu.Lock()
	n.procs = append(n.procs, cmd)
	n.mu.Unlock()
	return nil
}

func (n *NS) stopAll() {
	n.mu.Lock()
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	for _, c := range procs {
		if c.ProcessState == nil && c.Process != nil {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, c := range procs {
		if c.ProcessState != nil || c.Process == nil {
			continue
		}
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
}

// DialContext opens a TCP connection from inside the namespace. It fits
// http.Transport.DialContext.
func (n *NS) DialContext(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = n.Do(func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// WaitTCP waits until something inside the namespace accepts TCP connections on addr.
func (n *NS) WaitTCP(ctx context.Context, addr string) error {
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := n.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s in %s never accepted: %w (last error: %w)", addr, n.Name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Listen opens a listener inside the namespace.
func (n *NS) Listen(network, addr string) (l net.Listener, err error) {
	err = n.Do(func() error {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}
