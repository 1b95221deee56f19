package netns

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var bins *Binaries

// helperEnv switches the test binary into a tiny client, so a test can dial from a
// process with another UID (the proxy's) without a third-party tool: the process
// dials the address, sends the line, and prints everything it reads back.
const helperEnv = "WEFT_NETNS_HELPER_DIAL"

// Keep the main goroutine on the main thread so that NS.Do never runs on it (see Do).
func init() { runtime.LockOSThread() }

func TestMain(m *testing.M) {
	if addr := os.Getenv(helperEnv); addr != "" {
		os.Exit(helperDial(addr))
	}
	if os.Geteuid() == 0 {
		if err := CleanupStale(); err != nil {
			fmt.Fprintln(os.Stderr, "removing stale test namespaces:", err)
			os.Exit(1)
		}
	}
	var err error
	bins, err = NewBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	bins.Remove()
	os.Exit(code)
}

func helperDial(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if line := os.Getenv(helperEnv + "_SEND"); line != "" {
		if _, err := io.WriteString(c, line+"\n"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	b, err := io.ReadAll(c)
	os.Stdout.Write(b)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

var selfOnce sync.Once
var selfPath string
var selfErr error

// dialAs runs the helper client inside ns as uid, dialling addr and sending line,
// and returns what it read.
func dialAs(t *testing.T, ns *NS, uid uint32, addr, line string) (string, error) {
	t.Helper()
	selfOnce.Do(func() {
		// The test binary sits in a root-only build directory; copy it where the
		// unprivileged UID can execute it.
		selfPath = filepath.Join(bins.Dir, "netns-helper")
		var data []byte
		if data, selfErr = os.ReadFile(os.Args[0]); selfErr == nil {
			selfErr = os.WriteFile(selfPath, data, 0o755)
		}
	})
	if selfErr != nil {
		t.Fatalf("copy test binary: %v", selfErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, selfPath)
	cmd.Env = []string{helperEnv + "=" + addr, helperEnv + "_SEND=" + line}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := ns.Start(cmd); err != nil {
		return "", err
	}
	if err := cmd.Wait(); err != nil {
		return stdout.String(), fmt.Errorf("dial %s as uid %d: %w: %s", addr, uid, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// serveName accepts connections on l and answers each with name, the peer address it
// saw and the first line the client sent, so a test can tell which listener a
// connection reached and from where.
func serveName(t *testing.T, l net.Listener, name string) {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				// Read the client's line if it sends one quickly; a silent client
				// gets the answer anyway.
				_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "%s from=%s line=%s\n", name, c.RemoteAddr(), strings.TrimSpace(line))
			}()
		}
	}()
}
