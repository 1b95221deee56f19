package cli_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBinaryThreads starts the binary and reads the thread count it runs with from its
// start-up log line: one by default, GOMAXPROCS when that is set, --threads above both.
func TestBinaryThreads(t *testing.T) {
	bin := buildProxy(t)
	cases := []struct {
		name       string
		gomaxprocs string // environment; "" leaves it unset
		args       []string
		want       int // threads logged; 0: must exit with status 2 instead
	}{
		{name: "default is one thread", want: 1},
		{name: "GOMAXPROCS is respected", gomaxprocs: "3", want: 3},
		{name: "flag wins over GOMAXPROCS", gomaxprocs: "3", args: []string{"--threads", "2"}, want: 2},
		{name: "flag alone", args: []string{"--threads", "4"}, want: 4},
		{name: "zero keeps the runtime's choice", gomaxprocs: "5", args: []string{"--threads", "0"}, want: 5},
		{name: "negative is refused", args: []string{"--threads", "-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--identity-mode", "disabled", "--listen-addr", "127.0.0.1", "--admin-addr", "127.0.0.1",
				"--outbound-port", strconv.Itoa(freePort(t)), "--inbound-port", strconv.Itoa(freePort(t)),
				"--admin-port", strconv.Itoa(freePort(t))}, tc.args...)
			cmd := exec.Command(bin, args...)
			env := []string{}
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GOMAXPROCS=") {
					env = append(env, kv)
				}
			}
			if tc.gomaxprocs != "" {
				env = append(env, "GOMAXPROCS="+tc.gomaxprocs)
			}
			cmd.Env = env
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			got := make(chan int, 1)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					var line struct {
						Msg     string `json:"msg"`
						Threads *int   `json:"threads"`
					}
					if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "Proxy started" && line.Threads != nil {
						got <- *line.Threads
						return
					}
				}
				close(got)
			}()
			select {
			case n, ok := <-got:
				if tc.want == 0 {
					if ok {
						t.Fatalf("started with %d threads, want refusal", n)
					}
					err := cmd.Wait()
					if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 2 {
						t.Fatalf("exit: %v, want status 2", err)
					}
					return
				}
				if !ok {
					t.Fatalf("proxy exited without a start-up line: %v", cmd.Wait())
				}
				if n != tc.want {
					t.Fatalf("threads = %d, want %d", n, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no start-up line within 10s")
			}
		})
	}
}
