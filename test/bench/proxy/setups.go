package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/test/netns"
)

// Ports on loopback. Each setup has its own, so a slow shutdown of one setup cannot
// disturb the next.
const (
	serverAddr = "127.0.0.1:18080"

	// A Weft pair's client side listens on base+140 (outbound), base+143 (inbound)
	// and base+191 (admin); its server side on the same plus 10000.
	weftBase    = 14000
	weftTCPBase = 15000
	// The Weft pair with tracing on at 1% and at 100% (trace.go).
	weftTrace1Base   = 17000
	weftTrace100Base = 19000

	// The reference pairs. All ports stay below Linux's ephemeral range (32768 and
	// up): a port in it can be held by some other program's outgoing connection, or by
	// its TIME_WAIT for a minute, and then the proxy cannot bind it.
	haproxyClientPort = 16140
	haproxyServerPort = 16143
	nginxClientPort   = 16240
	nginxServerPort   = 16243
	caddyClientPort   = 16340
	caddyServerPort   = 16343

	// serverName is the DNS SAN of the server-side leaf the nginx and Caddy pairs use:
	// both check the peer's host name, and Weft's leaves carry only a SPIFFE ID.
	serverName = "bench-server.bench.weft"

	trustDomain = "bench.weft"

	// weftTapBase is the tap setup's pair (ports as weftBase's); each side's tap
	// server listens on base+190. Every pair's base differs: the setups run side by
	// side (TestSetupPortsDistinct).
	weftTapBase = 12000
)

// proc is one proxy process whose CPU and memory are measured, together with the
// processes it forks (nginx's workers).
type proc struct {
	role    string // "client" (the caller's side) or "server"
	cmd     *exec.Cmd
	log     *os.File
	stopped bool
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// setup is one way of getting from the load generator to the server.
type setup struct {
	name string
	// target is the URL the load generator hits.
	target string
	procs  []*proc
	// run, when set, replaces the in-process load generator (the netns setups run
	// it inside a namespace).
	run func(ctx context.Context, qps float64, conns int, d time.Duration) (loadResult, error)
	// server, when set, is the echo server this setup reaches (default: the one on
	// loopback).
	server *proc
	// closers run when the setup stops (the tap setup's client).
	closers []func()
}

// load drives the setup at qps (negative: as fast as possible).
func (s *setup) load(ctx context.Context, qps float64, conns int, d time.Duration) (loadResult, error) {
	if s.run != nil {
		return s.run(ctx, qps, conns, d)
	}
	return load(s.target, qps, conns, d)
}

// stop ends the setup's processes; stopping twice is harmless.
func (s *setup) stop() {
	for _, c := range s.closers {
		c()
	}
	s.closers = nil
	for _, p := range s.procs {
		if !p.stopped {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range s.procs {
		if p.stopped {
			continue
		}
		p.stopped = true
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		p.log.Close()
	}
}

// startSide starts one side of a proxy pair (logged as <name>-<role>.log) and waits up
// to timeout for ready; on failure it stops everything the setup started.
func (s *setup) startSide(ctx context.Context, dir, name, role string, env []string, timeout time.Duration,
	ready func(context.Context) error, bin string, args ...string) error {
	pr, err := startProcEnv(dir, name+"-"+role, env, bin, args...)
	if err != nil {
		s.stop()
		return err
	}
	pr.role = role
	s.procs = append(s.procs, pr)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	err = ready(wctx)
	cancel()
	if err != nil {
		s.stop()
		return fmt.Errorf("%s %s (log %s): %w", name, role, pr.log.Name(), err)
	}
	return nil
}

// tcpReady waits until a loopback port accepts connections.
func tcpReady(port int) func(context.Context) error {
	return func(ctx context.Context) error { return waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", port)) }
}

func startProc(dir, role, name string, args ...string) (*proc, error) {
	return startProcEnv(dir, role, nil, name, args...)
}

// startProcEnv starts a process with env (nil: the driver's environment), its output
// going to <dir>/<role>.log.
func startProcEnv(dir, role string, env []string, name string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, role+".log"))
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Die with the driver, so an interrupted run leaves no proxy holding the ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{role: role, cmd: cmd, log: logf}, nil
}

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never accepted: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitHTTP waits until url answers 200.
func waitHTTP(ctx context.Context, url string) error {
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never ready: %w", url, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func directSetup() *setup {
	return &setup{name: "direct", target: "http://" + serverAddr + "/echo?size=1024"}
}

// pki writes a CA and two leaves (client and server side) into dir.
type pki struct {
	ca             *netns.CA
	client, server netns.IdentityFiles
	// serverDNS is the server's identity with serverName as a DNS SAN as well.
	serverDNS netns.IdentityFiles
	clientID  string
	serverID  string
}

func newPKI(dir string) (*pki, error) {
	ca, err := netns.NewCA()
	if err != nil {
		return nil, err
	}
	p := &pki{
		ca:       ca,
		clientID: "spiffe://" + trustDomain + "/ns/bench/sa/client",
		serverID: "spiffe://" + trustDomain + "/ns/bench/sa/server",
	}
	now := time.Now()
	for _, side := range []struct {
		name  string
		id    string
		files *netns.IdentityFiles
	}{{"client", p.clientID, &p.client}, {"server", p.serverID, &p.server}} {
		leaf, err := ca.Issue(side.id, now.Add(-time.Minute), now.Add(24*time.Hour))
		if err != nil {
			return nil, err
		}
		if *side.files, err = ca.WriteIdentity(dir, side.name, leaf); err != nil {
			return nil, err
		}
	}
	leaf, err := ca.Issue(p.serverID, now.Add(-time.Minute), now.Add(24*time.Hour), serverName)
	if err != nil {
		return nil, err
	}
	if p.serverDNS, err = ca.WriteIdentity(dir, "server-dns", leaf); err != nil {
		return nil, err
	}
	return p, nil
}

// weftSetup runs two weft-proxy processes on loopback. The client-side proxy has no
// iptables in front of it, so its configuration fixes the original destination
// (outbound.originalDstOverride) to the server's address, which its destinations map
// to the server-side proxy over mTLS; the server-side proxy forwards to the server.
//
// With profileDir set, bin must be test/bench/weftprof, which writes a CPU profile of
// each proxy there (<name>-client.pprof, <name>-server.pprof) when it exits.
//
// threads > 0 sets GOMAXPROCS of each proxy. protocol is the destination's protocol
// hint: "" lets the proxy detect HTTP (the normal case), "opaque" makes it carry the
// connection as TCP over mTLS, which separates the cost of the HTTP layer from that of
// TLS and forwarding.
//
// cfgExtra is appended to both sides' configuration files (trace.go's tracing block);
// flags are more weft-proxy flags for both sides (the tap setup's).
func weftSetup(ctx context.Context, dir, bin, name string, base int, protocol, cfgExtra, profileDir string, threads int, p *pki, flags ...string) (*setup, error) {
	clientOutbound, clientInbound, clientAdmin := base+140, base+143, base+191
	serverOutbound, serverInbound, serverAdmin := base+10140, base+10143, base+10191
	clientCfg := fmt.Sprintf(`outbound:
  originalDstOverride: %[1]q
destinations:
- name: bench-server
  addresses: [%[1]q]
  protocol: %[4]q
  endpoints:
  - address: 127.0.0.1
    port: 18080
    identity: %[2]q
    proxyPort: %[3]d
`, serverAddr, p.serverID, serverInbound, protocol) + cfgExtra
	serverCfg := "inbound:\n  defaultPolicy: all-authenticated\n" + cfgExtra
	s := &setup{name: name, target: fmt.Sprintf("http://127.0.0.1:%d/echo?size=1024", clientOutbound)}
	for _, side := range []struct {
		role                          string
		cfg                           string
		id                            netns.IdentityFiles
		outbound, inbound, admin, tap int
	}{
		{"server", serverCfg, p.server, serverOutbound, serverInbound, serverAdmin, base + 10190},
		{"client", clientCfg, p.client, clientOutbound, clientInbound, clientAdmin, base + 190},
	} {
		cfgPath := filepath.Join(dir, name+"-"+side.role+".yaml")
		if err := os.WriteFile(cfgPath, []byte(side.cfg), 0o644); err != nil {
			return nil, fmt.Errorf("write config: %w", err)
		}
		args := append([]string{
			"--config", cfgPath, "--listen-addr", "127.0.0.1", "--admin-addr", "127.0.0.1",
			"--outbound-port", fmt.Sprint(side.outbound), "--inbound-port", fmt.Sprint(side.inbound),
			"--admin-port", fmt.Sprint(side.admin), "--log-level", "error",
			// Listened on only with --tap-identity (the tap setup's flags).
			"--tap-port", fmt.Sprint(side.tap),
			// The benchmark's server listens on 127.0.0.1 (serverAddr).
			"--unsafe-loopback-apps",
		}, side.id.Args()...)
		args = append(args, flags...)
		env := os.Environ()
		if profileDir != "" {
			env = append(env, "WEFT_CPUPROFILE="+filepath.Join(profileDir, name+"-"+side.role+".pprof"))
		}
		if threads > 0 {
			env = append(env, fmt.Sprintf("GOMAXPROCS=%d", threads))
		}
		ready := func(ctx context.Context) error {
			return waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/ready", side.admin))
		}
		if err := s.startSide(ctx, dir, name, side.role, env, 15*time.Second, ready, bin, args...); err != nil {
			return nil, err
		}
	}
	// Reorder so the client side is reported first.
	s.procs[0], s.procs[1] = s.procs[1], s.procs[0]
	return s, nil
}

// haproxySetup runs two HAProxy processes on loopback: the client side terminates
// plain HTTP and speaks HTTP/2 over mutual TLS 1.3 to the server side, which talks
// HTTP/1.1 to the server: the same shape as the Weft pair. HAProxy verifies the chain
// of the peer's certificate; it has no notion of SPIFFE IDs.
//
// threads > 0 sets HAProxy's nbthread.
func haproxySetup(ctx context.Context, dir, bin string, threads int, p *pki) (*setup, error) {
	bundle := func(f netns.IdentityFiles, name string) (string, error) {
		cert, err := os.ReadFile(f.Cert)
		if err != nil {
			return "", fmt.Errorf("read cert: %w", err)
		}
		key, err := os.ReadFile(f.Key)
		if err != nil {
			return "", fmt.Errorf("read key: %w", err)
		}
		path := filepath.Join(dir, name+".pem")
		return path, os.WriteFile(path, append(cert, key...), 0o600)
	}
	clientPEM, err := bundle(p.client, "haproxy-client")
	if err != nil {
		return nil, err
	}
	serverPEM, err := bundle(p.server, "haproxy-server")
	if err != nil {
		return nil, err
	}
	nbthread := ""
	if threads > 0 {
		nbthread = fmt.Sprintf("  nbthread %d\n", threads)
	}
	common := `global
` + nbthread + `  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 3s
  timeout client 30s
  timeout server 30s
  http-reuse always
`
	clientCfg := common + fmt.Sprintf(`frontend outbound
  bind 127.0.0.1:%d
  default_backend peer
backend peer
  server peer 127.0.0.1:%d ssl verify required ca-file %s crt %s alpn h2
`, haproxyClientPort, haproxyServerPort, p.client.Roots, clientPEM)
	serverCfg := common + fmt.Sprintf(`frontend inbound
  bind 127.0.0.1:%d ssl crt %s ca-file %s verify required alpn h2,http/1.1
  default_backend app
backend app
  server app %s
`, haproxyServerPort, serverPEM, p.server.Roots, serverAddr)

	s := &setup{name: "haproxy", target: fmt.Sprintf("http://127.0.0.1:%d/echo?size=1024", haproxyClientPort)}
	for _, side := range []struct {
		role, cfg string
		port      int
	}{{"server", serverCfg, haproxyServerPort}, {"client", clientCfg, haproxyClientPort}} {
		cfgPath := filepath.Join(dir, "haproxy-"+side.role+".cfg")
		if err := os.WriteFile(cfgPath, []byte(side.cfg), 0o644); err != nil {
			return nil, fmt.Errorf("write config: %w", err)
		}
		// -db: stay in the foreground, one process (no master-worker), so the pid we
		// hold is the one doing the work.
		if err := s.startSide(ctx, dir, "haproxy", side.role, nil, 10*time.Second, tcpReady(side.port), bin, "-db", "-f", cfgPath); err != nil {
			return nil, err
		}
	}
	s.procs[0], s.procs[1] = s.procs[1], s.procs[0]
	return s, nil
}

func setupNames(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
