package iptables

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []PortRange
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{name: "single", in: "4190", want: []PortRange{{4190, 4190}}},
		{name: "list with spaces and empty fields", in: " 25, 4191,,", want: []PortRange{{25, 25}, {4191, 4191}}},
		{name: "range", in: "9000-9100", want: []PortRange{{9000, 9100}}},
		{name: "range of one", in: "80-80", want: []PortRange{{80, 80}}},
		{name: "port zero", in: "0", wantErr: "port 0"},
		{name: "too large", in: "65536", wantErr: "invalid port"},
		{name: "backwards range", in: "90-80", wantErr: "end before start"},
		{name: "not a number", in: "http", wantErr: "invalid port"},
		{name: "bad range end", in: "80-x", wantErr: "invalid port range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePorts(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePorts(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePorts(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ParsePorts(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSubnets(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "mixed families", in: "10.0.0.0/8,fd00::/64", want: []string{"10.0.0.0/8", "fd00::/64"}},
		{name: "host bits are masked", in: "192.168.1.7/24", want: []string{"192.168.1.0/24"}},
		{name: "bare addresses are hosts", in: "10.1.2.3, ::1", want: []string{"10.1.2.3/32", "::1/128"}},
		{name: "garbage", in: "10.0.0.0/33", wantErr: true},
		{name: "not an address", in: "example.com", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSubnets(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseSubnets(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSubnets(%q): %v", tt.in, err)
			}
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			if !slices.Equal(s, tt.want) {
				t.Fatalf("ParseSubnets(%q) = %v, want %v", tt.in, s, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "default is valid", mutate: func(*Config) {}},
		{name: "negative uid", mutate: func(c *Config) { c.ProxyUID = -1 }, wantErr: "negative"},
		{name: "no inbound port", mutate: func(c *Config) { c.InboundPort = 0 }, wantErr: "inbound port"},
		{name: "no outbound port", mutate: func(c *Config) { c.OutboundPort = 0 }, wantErr: "outbound port"},
		{name: "same ports", mutate: func(c *Config) { c.OutboundPort = c.InboundPort }, wantErr: "both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func rulesText(rs []Rule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

func TestRender(t *testing.T) {
	tests := []struct {
		name   string
		cfg    func() Config
		family Family
		want   []string
	}{
		{
			name:   "defaults ipv4",
			cfg:    DefaultConfig,
			family: IPv4,
			want: []string{
				"-A WEFT_INBOUND -p tcp --dport 4190:4191 -m comment --comment 'skip inbound port' -j RETURN",
				"-A WEFT_INBOUND -p tcp -m comment --comment 'to weft inbound' -j REDIRECT --to-ports 4143",
				"-A WEFT_OUTBOUND -m owner --uid-owner 2102 -m comment --comment 'proxy traffic' -j RETURN",
				"-A WEFT_OUTBOUND -d 127.0.0.0/8 -o lo -m comment --comment loopback -j RETURN",
				"-A WEFT_OUTBOUND -p tcp -m comment --comment 'to weft outbound' -j REDIRECT --to-ports 4140",
			},
		},
		{
			name:   "defaults ipv6 use ::1 for loopback",
			cfg:    DefaultConfig,
			family: IPv6,
			want: []string{
				"-A WEFT_INBOUND -p tcp --dport 4190:4191 -m comment --comment 'skip inbound port' -j RETURN",
				"-A WEFT_INBOUND -p tcp -m comment --comment 'to weft inbound' -j REDIRECT --to-ports 4143",
				"-A WEFT_OUTBOUND -m owner --uid-owner 2102 -m comment --comment 'proxy traffic' -j RETURN",
				"-A WEFT_OUTBOUND -d ::1/128 -o lo -m comment --comment loopback -j RETURN",
				"-A WEFT_OUTBOUND -p tcp -m comment --comment 'to weft outbound' -j REDIRECT --to-ports 4140",
			},
		},
		{
			name: "custom ports, uid, skips; subnets split by family",
			cfg: func() Config {
				return Config{
					ProxyUID: 999, InboundPort: 15006, OutboundPort: 15001,
					SkipInboundPorts:  []PortRange{{22, 22}},
					SkipOutboundPorts: []PortRange{{3306, 3306}, {9000, 9100}},
					SkipSubnets:       []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00::/8")},
				}
			},
			family: IPv4,
			want: []string{
				"-A WEFT_INBOUND -p tcp --dport 22 -m comment --comment 'skip inbound port' -j RETURN",
				"-A WEFT_INBOUND -s 10.96.0.0/12 -m comment --comment 'skip subnet' -j RETURN",
				"-A WEFT_INBOUND -p tcp -m comment --comment 'to weft inbound' -j REDIRECT --to-ports 15006",
				"-A WEFT_OUTBOUND -m owner --uid-owner 999 -m comment --comment 'proxy traffic' -j RETURN",
				"-A WEFT_OUTBOUND -d 127.0.0.0/8 -o lo -m comment --comment loopback -j RETURN",
				"-A WEFT_OUTBOUND -d 10.96.0.0/12 -m comment --comment 'skip subnet' -j RETURN",
				"-A WEFT_OUTBOUND -p tcp --dport 3306 -m comment --comment 'skip outbound port' -j RETURN",
				"-A WEFT_OUTBOUND -p tcp --dport 9000:9100 -m comment --comment 'skip outbound port' -j RETURN",
				"-A WEFT_OUTBOUND -p tcp -m comment --comment 'to weft outbound' -j REDIRECT --to-ports 15001",
			},
		},
		{
			name: "ipv6 gets only the ipv6 subnets",
			cfg: func() Config {
				c := DefaultConfig()
				c.SkipInboundPorts = nil
				c.SkipSubnets = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00::/8")}
				return c
			},
			family: IPv6,
			want: []string{
				"-A WEFT_INBOUND -s fd00::/8 -m comment --comment 'skip subnet' -j RETURN",
				"-A WEFT_INBOUND -p tcp -m comment --comment 'to weft inbound' -j REDIRECT --to-ports 4143",
				"-A WEFT_OUTBOUND -m owner --uid-owner 2102 -m comment --comment 'proxy traffic' -j RETURN",
				"-A WEFT_OUTBOUND -d ::1/128 -o lo -m comment --comment loopback -j RETURN",
				"-A WEFT_OUTBOUND -d fd00::/8 -m comment --comment 'skip subnet' -j RETURN",
				"-A WEFT_OUTBOUND -p tcp -m comment --comment 'to weft outbound' -j REDIRECT --to-ports 4140",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := Render(tt.cfg(), tt.family)
			if got := rulesText(rs.Rules); !slices.Equal(got, tt.want) {
				t.Fatalf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			wantHooks := []string{
				"-A PREROUTING -p tcp -m comment --comment 'weft inbound' -j WEFT_INBOUND",
				"-A OUTPUT -p tcp -m comment --comment 'weft outbound' -j WEFT_OUTBOUND",
			}
			if got := rulesText(rs.Hooks); !slices.Equal(got, wantHooks) {
				t.Fatalf("hooks = %q, want %q", got, wantHooks)
			}
			if rs.Family != tt.family {
				t.Fatalf("family = %v, want %v", rs.Family, tt.family)
			}
		})
	}
}

// A save of a namespace where weft-init already ran once, as iptables-nft prints it.
const savedAfterInit = `# Generated by iptables-save v1.8.9 (nf_tables) on Sun Nov 22 22:49:07 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:WEFT_INBOUND - [0:0]
:WEFT_OUTBOUND - [0:0]
-A PREROUTING -p tcp -m comment --comment "weft inbound" -j WEFT_INBOUND
-A OUTPUT -p tcp -m comment --comment "weft outbound" -j WEFT_OUTBOUND
-A WEFT_INBOUND -p tcp -m tcp --dport 4190 -m comment --comment "skip inbound port" -j RETURN
-A WEFT_INBOUND -p tcp -m comment --comment "to weft inbound" -j REDIRECT --to-ports 4143
-A WEFT_OUTBOUND -m owner --uid-owner 2102 -m comment --comment "proxy traffic" -j RETURN
-A WEFT_OUTBOUND -p tcp -m comment --comment "to weft outbound" -j REDIRECT --to-ports 4140
COMMIT
# Completed on Sun Nov 22 22:49:07 2026
`

func TestParseSave(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantChains []string
		wantRules  int
		wantFirst  string
		wantErr    bool
	}{
		{name: "empty output", in: "", wantChains: nil, wantRules: 0},
		{
			name:       "after init",
			in:         savedAfterInit,
			wantChains: []string{"INPUT", "OUTPUT", "POSTROUTING", "PREROUTING", "WEFT_INBOUND", "WEFT_OUTBOUND"},
			wantRules:  6,
			wantFirst:  "-A PREROUTING -p tcp -m comment --comment 'weft inbound' -j WEFT_INBOUND",
		},
		{
			name:       "other tables are ignored",
			in:         "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
			wantChains: []string{"OUTPUT"},
			wantRules:  0,
		},
		{name: "unterminated quote", in: "*nat\n-A OUTPUT -m comment --comment \"oops -j X\nCOMMIT\n", wantErr: true},
		{name: "unknown line", in: "*nat\n-I OUTPUT -j X\nCOMMIT\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ParseSave(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatal("ParseSave succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSave: %v", err)
			}
			var chains []string
			for c := range st.Chains {
				chains = append(chains, c)
			}
			slices.Sort(chains)
			if !slices.Equal(chains, tt.wantChains) {
				t.Fatalf("chains = %v, want %v", chains, tt.wantChains)
			}
			if len(st.Rules) != tt.wantRules {
				t.Fatalf("%d rules, want %d", len(st.Rules), tt.wantRules)
			}
			if tt.wantFirst != "" && st.Rules[0].String() != tt.wantFirst {
				t.Fatalf("first rule %q, want %q", st.Rules[0].String(), tt.wantFirst)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SkipInboundPorts = nil
	rs := Render(cfg, IPv4)
	fresh := State{Chains: map[string]bool{"PREROUTING": true, "OUTPUT": true}}
	after, err := ParseSave(savedAfterInit)
	if err != nil {
		t.Fatal(err)
	}
	dup, err := ParseSave(strings.Replace(savedAfterInit,
		"-A OUTPUT -p tcp", "-A OUTPUT -j WEFT_OUTBOUND\n-A OUTPUT -p tcp", 1))
	if err != nil {
		t.Fatal(err)
	}
	fill := []string{
		"iptables -w 5 -t nat -A WEFT_INBOUND -p tcp -m comment --comment 'to weft inbound' -j REDIRECT --to-ports 4143",
		"iptables -w 5 -t nat -A WEFT_OUTBOUND -m owner --uid-owner 2102 -m comment --comment 'proxy traffic' -j RETURN",
		"iptables -w 5 -t nat -A WEFT_OUTBOUND -d 127.0.0.0/8 -o lo -m comment --comment loopback -j RETURN",
		"iptables -w 5 -t nat -A WEFT_OUTBOUND -p tcp -m comment --comment 'to weft outbound' -j REDIRECT --to-ports 4140",
	}
	tests := []struct {
		name string
		st   State
		want []string
	}{
		{
			name: "fresh namespace creates chains and hooks",
			st:   fresh,
			want: slices.Concat([]string{
				"iptables -w 5 -t nat -N WEFT_INBOUND",
				"iptables -w 5 -t nat -N WEFT_OUTBOUND",
			}, fill, []string{
				"iptables -w 5 -t nat -A PREROUTING -p tcp -m comment --comment 'weft inbound' -j WEFT_INBOUND",
				"iptables -w 5 -t nat -A OUTPUT -p tcp -m comment --comment 'weft outbound' -j WEFT_OUTBOUND",
			}),
		},
		{
			name: "second run flushes and refills, adds no hook",
			st:   after,
			want: slices.Concat([]string{
				"iptables -w 5 -t nat -F WEFT_INBOUND",
				"iptables -w 5 -t nat -F WEFT_OUTBOUND",
			}, fill),
		},
		{
			name: "duplicate hook is deleted by its saved words",
			st:   dup,
			want: slices.Concat([]string{
				"iptables -w 5 -t nat -F WEFT_INBOUND",
				"iptables -w 5 -t nat -F WEFT_OUTBOUND",
			}, fill, []string{
				"iptables -w 5 -t nat -D OUTPUT -p tcp -m comment --comment 'weft outbound' -j WEFT_OUTBOUND",
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range Plan("iptables", rs, tt.st) {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "plain", in: "-A OUTPUT -j X", want: []string{"-A", "OUTPUT", "-j", "X"}},
		{name: "quoted comment", in: `-m comment --comment "a b" -j X`, want: []string{"-m", "comment", "--comment", "a b", "-j", "X"}},
		{name: "escaped quote", in: `--comment "say \"hi\""`, want: []string{"--comment", `say "hi"`}},
		{name: "extra spaces", in: "  a   b ", want: []string{"a", "b"}},
		{name: "empty quoted word", in: `a "" b`, want: []string{"a", "", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitWords(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("splitWords(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// A missing binary must fail with advice before anything runs, and a dry run must
// still print a plan.
func TestRunnerMissingBinary(t *testing.T) {
	tests := []struct {
		name      string
		dryRun    bool
		wantErr   bool
		wantLines int
	}{
		{name: "real run fails with install advice", dryRun: false, wantErr: true},
		// Two chains, one skip (the admin port), the inbound redirect, three outbound
		// rules and the two hooks.
		{name: "dry run plans against an empty table", dryRun: true, wantLines: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			r := Runner{IPv4Binary: "weft-no-such-iptables", DryRun: tt.dryRun, Out: &out, Log: logr.Discard()}
			cfg := DefaultConfig()
			cfg.IPv6 = false
			err := r.Apply(context.Background(), cfg)
			if tt.wantErr {
				if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install iptables") {
					t.Fatalf("Apply error = %v, want ErrNotInstalled with install advice", err)
				}
				if out.Len() != 0 {
					t.Fatalf("printed %q before failing", out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != tt.wantLines {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), tt.wantLines, out.String())
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, "# dry-run: weft-no-such-iptables -w 5 -t nat ") {
					t.Fatalf("unexpected line %q", l)
				}
			}
		})
	}
}
