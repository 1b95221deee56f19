package iptables

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// The flags below are the contract between the injector and whatever programs a pod's
// rules: weft-init reads them from its container's arguments, and in CNI mode the
// weft-cni plugin reads the same arguments from the pod's validator container (see
// docs/cni.md). One parser for both means the plugin can never install rules that
// weft-init would not have installed for the same pod.

// portsFlag and subnetsFlag parse comma-separated lists as the flag is read, so a typo
// fails with the flag's name in the message.
type portsFlag struct{ v *[]PortRange }

func (p portsFlag) String() string {
	if p.v == nil {
		return ""
	}
	s := make([]string, len(*p.v))
	for i, r := range *p.v {
		s[i] = strings.ReplaceAll(r.String(), ":", "-")
	}
	return strings.Join(s, ",")
}

func (p portsFlag) Set(s string) error {
	v, err := ParsePorts(s)
	if err != nil {
		return err
	}
	*p.v = v
	return nil
}

type subnetsFlag struct{ c *Config }

func (s subnetsFlag) String() string {
	if s.c == nil {
		return ""
	}
	out := make([]string, len(s.c.SkipSubnets))
	for i, p := range s.c.SkipSubnets {
		out[i] = p.String()
	}
	return strings.Join(out, ",")
}

func (s subnetsFlag) Set(v string) error {
	p, err := ParseSubnets(v)
	if err != nil {
		return err
	}
	s.c.SkipSubnets = p
	return nil
}

// portFlag is a single TCP port, 1..65535, checked as the flag is read.
type portFlag struct{ v *uint16 }

func (p portFlag) String() string {
	if p.v == nil {
		return ""
	}
	return strconv.Itoa(int(*p.v))
}

func (p portFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > 65535 {
		return fmt.Errorf("ports must be at most 65535")
	}
	*p.v = uint16(n)
	return nil
}

// uidFlag is a UID, 0..2^31-1.
type uidFlag struct{ v *int }

func (u uidFlag) String() string {
	if u.v == nil {
		return ""
	}
	return strconv.Itoa(*u.v)
}

func (u uidFlag) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 0 {
		return fmt.Errorf("must be a UID between 0 and 2147483647")
	}
	*u.v = int(n)
	return nil
}

// RegisterFlags adds the rule flags (--proxy-uid, --inbound-port, --outbound-port,
// --skip-inbound-ports, --skip-outbound-ports, --skip-subnets, --ipv6) to fs, writing
// into c. c should start as DefaultConfig().
func RegisterFlags(fs *flag.FlagSet, c *Config) {
	fs.Var(uidFlag{&c.ProxyUID}, "proxy-uid", "UID the proxy runs as; its traffic is never redirected")
	fs.Var(portFlag{&c.InboundPort}, "inbound-port", "proxy inbound port that inbound TCP is redirected to")
	fs.Var(portFlag{&c.OutboundPort}, "outbound-port", "proxy outbound port that outbound TCP is redirected to")
	fs.Var(portsFlag{&c.SkipInboundPorts}, "skip-inbound-ports", "comma-separated ports or ranges (a-b) whose inbound traffic bypasses the proxy")
	fs.Var(portsFlag{&c.SkipOutboundPorts}, "skip-outbound-ports", "comma-separated ports or ranges (a-b) whose outbound traffic bypasses the proxy")
	fs.Var(subnetsFlag{c}, "skip-subnets", "comma-separated CIDRs (IPv4 and IPv6) whose traffic, to or from, bypasses the proxy")
	fs.BoolVar(&c.IPv6, "ipv6", c.IPv6, "also program ip6tables")
}

// MaxArgs bounds the argument list ParseRuleArgs accepts, and MaxSkips the port ranges
// and subnets it may hold together (each is one rule per family). The injector writes
// about ten arguments and, from the Mesh's lists of at most 64 entries and the pod's
// annotations, a few dozen skips; the bounds keep a hostile pod spec from making the
// node's CNI plugin write thousands of rules.
const (
	MaxArgs  = 64
	MaxSkips = 256
)

// ParseRuleArgs reads a weft-init argument list as written by the injector and returns
// the rules' Config. Only the rule flags are accepted, plus those named in ignore
// (flags of the reading program that do not change the rules, such as --validate);
// anything else is an error, so an argument list from a newer injector that this
// reader does not understand fails loudly instead of being half-applied.
func ParseRuleArgs(args []string, ignore ...string) (Config, error) {
	if len(args) > MaxArgs {
		return Config{}, fmt.Errorf("%d arguments, more than the %d allowed", len(args), MaxArgs)
	}
	c := DefaultConfig()
	fs := flag.NewFlagSet("weft-init", flag.ContinueOnError)
	fs.SetOutput(discard{})
	RegisterFlags(fs, &c)
	for _, name := range ignore {
		fs.Bool(name, false, "ignored")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, errors.New("unexpected -h")
		}
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if n := len(c.SkipInboundPorts) + len(c.SkipOutboundPorts) + len(c.SkipSubnets); n > MaxSkips {
		return Config{}, fmt.Errorf("%d skipped ports and subnets, more than the %d allowed", n, MaxSkips)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
