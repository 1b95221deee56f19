package main

import "testing"

// Exit codes are the contract with the pod: 2 for a bad invocation (nothing ran), 1
// for a failure while applying, 0 for success.
func TestRunExitCodes(t *testing.T) {
	// Binaries that do not exist keep these tests away from the host's real tables:
	// a dry run plans against an empty table, a real run fails before changing
	// anything.
	missing := []string{"--iptables", "weft-test-no-iptables", "--ip6tables", "weft-test-no-ip6tables"}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{name: "dry run with defaults", args: append([]string{"--dry-run"}, missing...), want: 0},
		{name: "dry run with every flag", args: append([]string{"--dry-run", "--proxy-uid", "1000", "--inbound-port", "15006",
			"--outbound-port", "15001", "--skip-inbound-ports", "22,4190-4191", "--skip-outbound-ports", "3306",
			"--skip-subnets", "10.0.0.0/8,fd00::/8", "--ipv6=false"}, missing...), want: 0},
		{name: "missing iptables fails", args: missing, want: 1},
		{name: "same inbound and outbound port fails", args: append([]string{"--dry-run", "--inbound-port", "4140"}, missing...), want: 1},
		{name: "port out of range", args: []string{"--inbound-port", "70000"}, want: 2},
		{name: "bad skip port", args: []string{"--skip-outbound-ports", "80,http"}, want: 2},
		{name: "bad subnet", args: []string{"--skip-subnets", "10.0.0.0/40"}, want: 2},
		{name: "stray argument", args: []string{"--dry-run", "extra"}, want: 2},
		{name: "unknown flag", args: []string{"--redirect-everything"}, want: 2},
		{name: "help", args: []string{"-h"}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(tt.args); got != tt.want {
				t.Fatalf("run(%q) = %d, want %d", tt.args, got, tt.want)
			}
		})
	}
}
