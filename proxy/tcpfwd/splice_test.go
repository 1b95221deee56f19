package tcpfwd

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const helperEnv = "TCPFWD_TEST_HELPER"

// TestMain lets the test binary act as the two endpoints in child processes, so the
// parent's I/O counters see only what Pipe does.
func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helper(role))
	}
	os.Exit(m.Run())
}

const spliceBytes = 32 << 20

// helper "client:ADDR" sends spliceBytes, half-closes and reads the reply;
// "backend:ADDR" reads to EOF and sends spliceBytes back.
func helper(role string) int {
	kind, addr, _ := strings.Cut(role, ":")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 2
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	chunk := bytes.Repeat([]byte("z"), 64<<10)
	send := func() error {
		for n := 0; n < spliceBytes; n += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return err
			}
		}
		return c.(*net.TCPConn).CloseWrite()
	}
	if kind == "client" {
		if send() != nil {
			return 3
		}
		n, err := io.Copy(io.Discard, c)
		if err != nil || n != spliceBytes {
			return 4
		}
		return 0
	}
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != spliceBytes || send() != nil {
		return 5
	}
	return 0
}

// ioCounters reads this process's rchar/wchar: bytes that went through read(2) and
// write(2)-family calls. splice(2) moves socket data without passing it through them.
func ioCounters(t *testing.T) (rchar, wchar int64) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "rchar":
			rchar = n
		case "wchar":
			wchar = n
		}
	}
	return rchar, wchar
}

// TestPipeIsZeroCopy forwards 32 MiB each way between two child processes and checks
// that the bytes did not pass through this process's read/write buffers, with and
// without an idle timeout (which reads in chunks under a deadline).
func TestPipeIsZeroCopy(t *testing.T) {
	for _, idle := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprintf("idle %s", idle), func(t *testing.T) { testPipeIsZeroCopy(t, idle) })
	}
}

func testPipeIsZeroCopy(t *testing.T, idle time.Duration) {
	lnClient, _ := net.Listen("tcp", "127.0.0.1:0")
	lnBackend, _ := net.Listen("tcp", "127.0.0.1:0")
	defer lnClient.Close()
	defer lnBackend.Close()
	start := func(role string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+role)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	client := start("client:" + lnClient.Addr().String())
	backend := start("backend:" + lnBackend.Addr().String())
	a, err := lnClient.Accept()
	if err != nil {
		t.Fatal(err)
	}
	b, err := lnBackend.Accept()
	if err != nil {
		t.Fatal(err)
	}
	r0, w0 := ioCounters(t)
	res := PipeIdle(a, b, nil, nil, idle)
	r1, w1 := ioCounters(t)
	if res.Err != nil || res.AToB != spliceBytes || res.BToA != spliceBytes {
		t.Fatalf("pipe: %+v", res)
	}
	for name, cmd := range map[string]*exec.Cmd{"client": client, "backend": backend} {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s helper: %v", name, err)
		}
	}
	copied := (r1 - r0) + (w1 - w0)
	t.Logf("forwarded %d MiB, %d bytes through read/write", 2*spliceBytes>>20, copied)
	if copied > spliceBytes/8 {
		t.Fatalf("%s of %d bytes went through user space: not spliced", fmt.Sprint(copied), 2*spliceBytes)
	}
}
