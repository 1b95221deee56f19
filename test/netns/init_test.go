package netns

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test "pods" live in 10.199.1.0/24 and fd00:199::/64, which exist only inside the
// namespaces the tests create.
const (
	addrA  = "10.199.1.1"
	addrB  = "10.199.1.2"
	addrA6 = "fd00:199::1"
	addrB6 = "fd00:199::2"
)

// twoPods makes namespaces a and b joined by eth0, with a default route through eth0 in
// each so that ClusterIP-like addresses are routable (they are redirected or dropped
// before they could go anywhere else).
func twoPods(t *testing.T) (a, b *NS) {
	t.Helper()
	a, b = New(t, "a"), New(t, "b")
	Link(t, a, b, "eth0", []string{addrA + "/24", addrA6 + "/64"}, []string{addrB + "/24", addrB6 + "/64"})
	for _, ns := range []*NS{a, b} {
		ns.MustIP(t, "route", "add", "default", "dev", "eth0")
		ns.MustIP(t, "-6", "route", "add", "default", "dev", "eth0")
	}
	return a, b
}

func weftInit(t *testing.T) string {
	t.Helper()
	p, err := bins.Get("./cmd/weft-init")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// save returns iptables-save and ip6tables-save of the nat table without the
// timestamp comments, so two saves of the same rules compare equal.
func save(t *testing.T, ns *NS) string {
	t.Helper()
	var b strings.Builder
	for _, bin := range []string{"iptables-save", "ip6tables-save"} {
		out, err := ns.Exec(context.Background(), bin, "-t", "nat")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "#") {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

func runInit(t *testing.T, ns *NS, args ...string) string {
	t.Helper()
	out, err := ns.Exec(context.Background(), weftInit(t), args...)
	if err != nil {
		t.Fatalf("weft-init %v: %v", args, err)
	}
	return string(out)
}

func TestInitRules(t *testing.T) {
	RequireRoot(t)
	flags := []string{"--skip-outbound-ports", "5432,9000-9100", "--skip-subnets", "10.96.0.0/12,fd00:96::/64"}
	tests := []struct {
		name string
		// prepare runs in a fresh namespace before the step under test.
		prepare func(t *testing.T, ns *NS)
		// step is what is checked.
		step func(t *testing.T, ns *NS) string
		// check looks at the state afterwards.
		check func(t *testing.T, ns *NS, output, before string)
	}{
		{
			name: "fresh namespace gets chains, hooks and redirects in both families",
			step: func(t *testing.T, ns *NS) string { return runInit(t, ns, flags...) },
			check: func(t *testing.T, ns *NS, output, _ string) {
				s := save(t, ns)
				for _, want := range []string{
					`-A PREROUTING -p tcp -m comment --comment "weft inbound" -j WEFT_INBOUND`,
					`-A OUTPUT -p tcp -m comment --comment "weft outbound" -j WEFT_OUTBOUND`,
					`-A WEFT_INBOUND -p tcp -m tcp --dport 4190:4191 -m comment --comment "skip inbound port" -j RETURN`,
					`-A WEFT_INBOUND -p tcp -m comment --comment "to weft inbound" -j REDIRECT --to-ports 4143`,
					`-A WEFT_OUTBOUND -m owner --uid-owner 2102 -m comment --comment "proxy traffic" -j RETURN`,
					`-A WEFT_OUTBOUND -d 127.0.0.0/8 -o lo -m comment --comment loopback -j RETURN`,
					`-A WEFT_OUTBOUND -d ::1/128 -o lo -m comment --comment loopback -j RETURN`,
					`-A WEFT_OUTBOUND -d 10.96.0.0/12 -m comment --comment "skip subnet" -j RETURN`,
					`-A WEFT_OUTBOUND -d fd00:96::/64 -m comment --comment "skip subnet" -j RETURN`,
					`-A WEFT_OUTBOUND -p tcp -m tcp --dport 9000:9100 -m comment --comment "skip outbound port" -j RETURN`,
					`-A WEFT_OUTBOUND -p tcp -m comment --comment "to weft outbound" -j REDIRECT --to-ports 4140`,
				} {
					if !strings.Contains(s, want+"\n") {
						t.Errorf("iptables-save lacks %q; got:\n%s", want, s)
					}
				}
				// 13 per family: the default skips the proxy's tap and admin ports
				// (4190-4191) in one rule, and nothing else.
				if got := strings.Count(output, "+ iptables "); got != 13 {
					t.Errorf("printed %d iptables commands, want 13:\n%s", got, output)
				}
				if got := strings.Count(output, "+ ip6tables "); got != 13 {
					t.Errorf("printed %d ip6tables commands, want 13:\n%s", got, output)
				}
			},
		},
		{
			name:    "second run changes nothing",
			prepare: func(t *testing.T, ns *NS) { runInit(t, ns, flags...) },
			step:    func(t *testing.T, ns *NS) string { return runInit(t, ns, flags...) },
			check: func(t *testing.T, ns *NS, _, before string) {
				if after := save(t, ns); after != before {
					t.Errorf("second run changed iptables-save:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			},
		},
		{
			name: "dry run prints the plan and changes nothing",
			step: func(t *testing.T, ns *NS) string { return runInit(t, ns, append([]string{"--dry-run"}, flags...)...) },
			check: func(t *testing.T, ns *NS, output, before string) {
				if after := save(t, ns); after != before || strings.Contains(after, "WEFT") {
					t.Errorf("dry run changed iptables-save:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				if !strings.Contains(output, "# dry-run: iptables -w 5 -t nat -N WEFT_INBOUND") ||
					!strings.Contains(output, "# dry-run: ip6tables -w 5 -t nat -A OUTPUT") || strings.Contains(output, "+ ") {
					t.Errorf("dry-run output is not a plan:\n%s", output)
				}
			},
		},
		{
			name: "stale rules and a duplicate hook are repaired",
			prepare: func(t *testing.T, ns *NS) {
				runInit(t, ns, flags...)
				for _, args := range [][]string{
					{"-t", "nat", "-A", "WEFT_OUTBOUND", "-p", "tcp", "--dport", "1", "-j", "RETURN"},
					{"-t", "nat", "-A", "OUTPUT", "-j", "WEFT_OUTBOUND"},
				} {
					if _, err := ns.Exec(context.Background(), "iptables", args...); err != nil {
						t.Fatal(err)
					}
				}
			},
			step: func(t *testing.T, ns *NS) string { return runInit(t, ns, flags...) },
			check: func(t *testing.T, ns *NS, _, _ string) {
				s := save(t, ns)
				if strings.Contains(s, "--dport 1 ") || strings.Count(s, "-j WEFT_OUTBOUND") != 2 {
					t.Errorf("stale rule or duplicate hook survived:\n%s", s)
				}
			},
		},
		{
			name:    "new configuration replaces the old rules",
			prepare: func(t *testing.T, ns *NS) { runInit(t, ns, flags...) },
			step: func(t *testing.T, ns *NS) string {
				return runInit(t, ns, "--skip-outbound-ports", "25", "--proxy-uid", "3000")
			},
			check: func(t *testing.T, ns *NS, _, _ string) {
				s := save(t, ns)
				if strings.Contains(s, "5432") || strings.Contains(s, "10.96.0.0/12") || strings.Contains(s, "2102") ||
					!strings.Contains(s, "--dport 25 ") || !strings.Contains(s, "--uid-owner 3000 ") {
					t.Errorf("rules do not follow the new configuration:\n%s", s)
				}
			},
		},
		{
			name: "ipv6=false leaves ip6tables alone",
			step: func(t *testing.T, ns *NS) string { return runInit(t, ns, "--ipv6=false") },
			check: func(t *testing.T, ns *NS, output, _ string) {
				out, err := ns.Exec(context.Background(), "ip6tables-save", "-t", "nat")
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(out), "WEFT") || strings.Contains(output, "ip6tables") {
					t.Errorf("ip6tables touched with --ipv6=false:\n%s\n%s", out, output)
				}
				if !strings.Contains(save(t, ns), "WEFT_OUTBOUND") {
					t.Error("iptables not programmed")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := New(t, "init")
			if tt.prepare != nil {
				tt.prepare(t, ns)
			}
			before := save(t, ns)
			out := tt.step(t, ns)
			tt.check(t, ns, out, before)
		})
	}
}

// Without iptables on the PATH weft-init must say what to install, and change nothing.
func TestInitWithoutIptables(t *testing.T) {
	RequireRoot(t)
	ns := New(t, "noipt")
	empty := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, weftInit(t))
	cmd.Env = []string{"PATH=" + empty}
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := ns.Start(cmd); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("weft-init without iptables: %v, want exit status 1", err)
	}
	if !strings.Contains(stderr.String(), "apt-get install iptables") {
		t.Errorf("error does not say what to install: %s", stderr.String())
	}
	if s := save(t, ns); strings.Contains(s, "WEFT") {
		t.Errorf("rules appeared:\n%s", s)
	}
}

// TestRedirect checks where connections land once weft-init has run in both pods,
// with the test's own listeners standing in for the proxy: this is the rule set's
// behaviour, independent of weft-proxy.
func TestRedirect(t *testing.T) {
	RequireRoot(t)
	a, b := twoPods(t)
	runInit(t, a, "--skip-outbound-ports", "9092", "--skip-subnets", "10.199.9.0/24")
	runInit(t, b, "--skip-inbound-ports", "4190,4191,9093")

	listen := func(ns *NS, addr, name string) {
		l, err := ns.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		serveName(t, l, name)
	}
	listen(a, ":4140", "a-outbound")
	listen(a, "127.0.0.1:7000", "a-local")
	listen(a, "[::1]:7000", "a-local6")
	listen(a, ":7001", "a-app")
	listen(b, ":4143", "b-inbound")
	for _, port := range []string{"8080", "9092", "9093", "4191"} {
		listen(b, ":"+port, "b-app-"+port)
	}

	tests := []struct {
		name   string
		from   *NS
		uid    uint32 // 0: the test process itself (root)
		dst    string
		want   string // the listener that must answer
		wantIP string // the source address that listener must see ("" = any)
	}{
		{name: "app outbound to a ClusterIP is redirected to the outbound port", from: a, dst: "10.199.2.10:80", want: "a-outbound"},
		{name: "app outbound to a pod is redirected", from: a, dst: addrB + ":8080", want: "a-outbound"},
		{name: "app outbound over IPv6 is redirected", from: a, dst: "[" + addrB6 + "]:8080", want: "a-outbound"},
		{name: "skip outbound port goes straight to the peer", from: a, dst: addrB + ":9092", want: "b-inbound", wantIP: addrA},
		{name: "skip subnet is not redirected", from: a, dst: "10.199.9.9:80", want: "dial error"},
		{name: "loopback-to-self is not redirected", from: a, dst: "127.0.0.1:7000", want: "a-local"},
		{name: "IPv6 loopback-to-self is not redirected", from: a, dst: "[::1]:7000", want: "a-local6"},
		{name: "app to its own pod IP (via lo) is redirected", from: a, dst: addrA + ":7001", want: "a-outbound"},
		{name: "proxy UID bypasses outbound, lands on the peer's inbound port", from: a, uid: 2102, dst: addrB + ":8080", want: "b-inbound", wantIP: addrA},
		{name: "proxy UID over IPv6 lands on the peer's inbound port", from: a, uid: 2102, dst: "[" + addrB6 + "]:8080", want: "b-inbound", wantIP: addrA6},
		{name: "proxy UID to a skipped inbound port reaches the app directly", from: a, uid: 2102, dst: addrB + ":9093", want: "b-app-9093", wantIP: addrA},
		{name: "admin port is skipped inbound by default", from: a, uid: 2102, dst: addrB + ":4191", want: "b-app-4191", wantIP: addrA},
		{name: "proxy UID may dial its own pod directly", from: a, uid: 2102, dst: addrA + ":7001", want: "a-app"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := fmt.Sprintf("probe-%d", i)
			var got string
			var err error
			if tt.uid == 0 {
				got, err = dialRoot(tt.from, tt.dst, line)
			} else {
				got, err = dialAs(t, tt.from, tt.uid, tt.dst, line)
			}
			if tt.want == "dial error" {
				if err == nil {
					t.Fatalf("dial %s answered %q, want no answer (not redirected, nothing there)", tt.dst, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fields := strings.Fields(got)
			if len(fields) != 3 || fields[0] != tt.want || fields[2] != "line="+line {
				t.Fatalf("dial %s answered %q, want listener %s with our line", tt.dst, got, tt.want)
			}
			if tt.wantIP != "" && !strings.HasPrefix(fields[1], "from="+maybeBracket(tt.wantIP)+":") {
				t.Fatalf("listener saw %s, want source %s", fields[1], tt.wantIP)
			}
		})
	}
}

func maybeBracket(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

// dialRoot dials from inside ns as the test process (root, not the proxy UID).
func dialRoot(ns *NS, addr, line string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}
