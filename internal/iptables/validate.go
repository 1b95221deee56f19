package iptables

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// ErrNotRedirected is wrapped by CheckRedirect's error when the pod's rules are missing.
var ErrNotRedirected = errors.New("outbound traffic is not redirected to the proxy")

// Candidates for the probe's destination: addresses reserved for documentation (RFC
// 5737), so nothing answers there, and ordinary ports. The first that the Config does
// not skip is used, so a configuration that skips one of them still gets checked.
var (
	probeAddrs = []netip.Addr{
		netip.MustParseAddr("192.0.2.1"),
		netip.MustParseAddr("198.51.100.1"),
		netip.MustParseAddr("203.0.113.1"),
	}
	probePorts = []uint16{80, 443, 8080, 9, 1}
)

// ProbeTarget is the address CheckRedirect dials: one that c's outbound rules must
// redirect (not skipped by subnet or port). ok is false when c skips every candidate.
func ProbeTarget(c Config) (netip.AddrPort, bool) {
	for _, a := range probeAddrs {
		if slices.ContainsFunc(c.SkipSubnets, func(p netip.Prefix) bool { return p.Contains(a) }) {
			continue
		}
		for _, port := range probePorts {
			if !slices.ContainsFunc(c.SkipOutboundPorts, func(r PortRange) bool { return r.From <= port && port <= r.To }) {
				return netip.AddrPortFrom(a, port), true
			}
		}
	}
	return netip.AddrPort{}, false
}

// CheckRedirect proves, from inside a pod and without any privilege, that the outbound
// rules of c are in place: it listens on 127.0.0.1 at c's outbound port (where REDIRECT
// sends locally created connections), dials ProbeTarget, and expects its own connection,
// carrying a random token, to arrive on that listener before ctx ends (and within 5s).
//
// It must run before the proxy (the port is the proxy's) and as a UID other than the
// proxy's, whose traffic the rules exempt on purpose. Only IPv4 is dialled: the plugin
// writes both families in one run, so IPv4 rules in place show that it ran, and a pod
// without IPv6 could not tell missing rules from a missing route.
func CheckRedirect(ctx context.Context, c Config) error {
	target, ok := ProbeTarget(c)
	if !ok {
		return fmt.Errorf("cannot check: every probe address or port is skipped by the configuration")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(c.OutboundPort))))
	if err != nil {
		return fmt.Errorf("listen on the proxy's outbound port %d (the check must run before the proxy starts): %w", c.OutboundPort, err)
	}
	defer ln.Close()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()

	var tok [16]byte
	_, _ = rand.Read(tok[:])
	token := []byte(hex.EncodeToString(tok[:]) + "\n")

	accepted := make(chan error, 1)
	go func() { accepted <- acceptToken(ctx, ln, token) }()

	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp4", target.String())
	if err != nil {
		return fmt.Errorf("%w: a connection to %s was not answered by the listener on port %d: %w", ErrNotRedirected, target, c.OutboundPort, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(token); err != nil {
		return fmt.Errorf("%w: writing to %s: %w", ErrNotRedirected, target, err)
	}
	if err := <-accepted; err != nil {
		return fmt.Errorf("%w: a connection to %s did not arrive on port %d: %w", ErrNotRedirected, target, c.OutboundPort, err)
	}
	return nil
}

// acceptToken waits for the connection that carries token. Connections with anything
// else are dropped: only the probe's own connection proves the redirect.
func acceptToken(ctx context.Context, ln net.Listener, token []byte) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("no connection before the deadline: %w", ctx.Err())
			}
			return err
		}
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		got := make([]byte, len(token))
		_, err = io.ReadFull(conn, got)
		conn.Close()
		if err == nil && bytes.Equal(got, token) {
			return nil
		}
	}
}
