package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"fortio.org/log"
)

// The netns setups measure the path a pod really takes: the app's connection is
// redirected by weft-init's iptables rules, the proxy finds the destination with
// SO_ORIGINAL_DST, and the bytes cross a veth pair between two network namespaces.
// Addresses exist only inside the namespaces.
const (
	nsAddrA        = "10.199.1.1"
	nsAddrB        = "10.199.1.2"
	nsClusterIP    = "10.199.2.10"
	nsServerPort   = 18080
	nsProxyUID     = 2102
	nsNamePrefix   = "weft-bench-"
	nsLoadTimeout  = 5 * time.Minute
	nsServerTarget = "http://" + nsAddrB + ":18080/echo?size=1024"
)

// podPair is two namespaces, "a" (the client pod) and "b" (the server pod), with
// weft-init applied in both, weft-proxy running in both as the proxy UID, and the
// echo server in b.
type podPair struct {
	a, b   string
	self   string  // a copy of this binary the proxy UID can execute
	procs  []*proc // client proxy, server proxy
	server *proc
}

func nsRun(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// inNS returns the argv that runs argv inside namespace ns, as uid when uid > 0.
// `ip netns exec` and setpriv both exec, so the started process's pid is the
// program's own.
func inNS(ns string, uid int, argv ...string) []string {
	out := []string{"ip", "netns", "exec", ns}
	if uid > 0 {
		out = append(out, "setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups", "--")
	}
	return append(out, argv...)
}

func removeStaleNamespaces() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), nsNamePrefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(e.Name(), nsNamePrefix), "-")
		if pid, err := strconv.Atoi(pidStr); err == nil && pid != os.Getpid() && processAlive(pid) {
			continue
		}
		_ = exec.Command("ip", "netns", "del", e.Name()).Run()
	}
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// startPodPair builds the two pods. The binaries and certificates must be readable by
// the proxy UID.
func startPodPair(ctx context.Context, dir, weftProxy, weftInit string, threads int, p *pki) (*podPair, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the netns setups need root")
	}
	removeStaleNamespaces()
	// The proxies run as an unprivileged UID: they need to read the work dir (a
	// private temporary directory by default) and execute a copy of the binary that
	// does not depend on the permissions of the directories above it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open work dir to the proxy UID: %w", err)
	}
	bin, err := os.ReadFile(weftProxy)
	if err != nil {
		return nil, fmt.Errorf("read weft-proxy: %w", err)
	}
	weftProxy = filepath.Join(dir, "weft-proxy")
	if err := os.WriteFile(weftProxy, bin, 0o755); err != nil {
		return nil, fmt.Errorf("copy weft-proxy: %w", err)
	}
	pp := &podPair{a: fmt.Sprintf("%s%d-a", nsNamePrefix, os.Getpid()), b: fmt.Sprintf("%s%d-b", nsNamePrefix, os.Getpid())}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	if bin, err = os.ReadFile(self); err != nil {
		return nil, fmt.Errorf("read own binary: %w", err)
	}
	pp.self = filepath.Join(dir, "bench-proxy")
	if err := os.WriteFile(pp.self, bin, 0o755); err != nil {
		return nil, fmt.Errorf("copy own binary: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			pp.stop()
		}
	}()
	for _, ns := range []string{pp.a, pp.b} {
		if err := nsRun("ip", "netns", "add", ns); err != nil {
			return nil, err
		}
		if err := nsRun(inNS(ns, 0, "ip", "link", "set", "lo", "up")...); err != nil {
			return nil, err
		}
	}
	if err := nsRun("ip", "link", "add", "eth0", "netns", pp.a, "type", "veth", "peer", "name", "eth0", "netns", pp.b); err != nil {
		return nil, err
	}
	for _, side := range []struct{ ns, addr string }{{pp.a, nsAddrA}, {pp.b, nsAddrB}} {
		for _, args := range [][]string{
			{"ip", "addr", "add", side.addr + "/24", "dev", "eth0"},
			{"ip", "link", "set", "eth0", "up"},
			{"ip", "route", "add", "default", "dev", "eth0"},
		} {
			if err := nsRun(inNS(side.ns, 0, args...)...); err != nil {
				return nil, err
			}
		}
	}
	// B skips the server port inbound so that the direct baseline (the load
	// generator running as the proxy UID in A, so A's rules pass it too) reaches the
	// server without a proxy. B's proxy dials the server locally, which never passes
	// PREROUTING, so the skip does not change the proxied path.
	if err := nsRun(inNS(pp.a, 0, weftInit)...); err != nil {
		return nil, err
	}
	if err := nsRun(inNS(pp.b, 0, weftInit, "--skip-inbound-ports", fmt.Sprintf("4190,4191,%d", nsServerPort))...); err != nil {
		return nil, err
	}

	argv := inNS(pp.b, 0, pp.self, "serve", fmt.Sprintf("0.0.0.0:%d", nsServerPort))
	if pp.server, err = startProc(dir, "netns-server", argv[0], argv[1:]...); err != nil {
		return nil, err
	}

	clientCfg := fmt.Sprintf(`destinations:
- name: bench-server
  addresses: ["%s:80"]
  endpoints:
  - address: %s
    port: %d
    identity: %q
`, nsClusterIP, nsAddrB, nsServerPort, p.serverID)
	serverCfg := "inbound:\n  defaultPolicy: all-authenticated\n"
	for _, side := range []struct {
		role, ns, cfg string
		args          []string
	}{
		{"server", pp.b, serverCfg, p.server.Args()},
		{"client", pp.a, clientCfg, p.client.Args()},
	} {
		cfgPath := filepath.Join(dir, "netns-"+side.role+".yaml")
		if err := os.WriteFile(cfgPath, []byte(side.cfg), 0o644); err != nil {
			return nil, fmt.Errorf("write config: %w", err)
		}
		argv := inNS(side.ns, nsProxyUID, append([]string{weftProxy, "--config", cfgPath, "--log-level", "error"}, side.args...)...)
		env := os.Environ()
		if threads > 0 {
			env = append(env, fmt.Sprintf("GOMAXPROCS=%d", threads))
		}
		pr, err := startProcEnv(dir, "netns-weft-"+side.role, env, argv[0], argv[1:]...)
		if err != nil {
			return nil, err
		}
		pr.role = side.role
		pp.procs = append(pp.procs, pr)
	}
	pp.procs[0], pp.procs[1] = pp.procs[1], pp.procs[0]
	// Ready when a request goes all the way through.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := pp.load(ctx, "http://"+nsClusterIP+"/echo?size=1024", 0, 10, 1, time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("netns pods never served (logs in %s): %w", dir, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ok = true
	return pp, nil
}

func (pp *podPair) stop() {
	s := &setup{procs: pp.procs}
	if pp.server != nil {
		s.procs = append(s.procs, pp.server)
	}
	s.stop()
	for _, ns := range []string{pp.a, pp.b} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// load runs the load generator inside pod A (as uid when > 0) and returns its
// result.
func (pp *podPair) load(ctx context.Context, url string, uid int, qps float64, conns int, d time.Duration) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+nsLoadTimeout)
	defer cancel()
	argv := inNS(pp.a, uid, pp.self, "load", "-url", url, "-qps", fmt.Sprint(qps), "-connections", fmt.Sprint(conns), "-duration", d.String())
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("load in %s: %w: %s", pp.a, err, strings.TrimSpace(stderr.String()))
	}
	var r wireResult
	if err := json.Unmarshal(out, &r); err != nil {
		return loadResult{}, fmt.Errorf("load result: %w", err)
	}
	if r.Error != "" {
		return loadResult{}, errors.New(r.Error)
	}
	return loadResult{qps: r.QPS, count: r.Count, errors: r.Errors, p: r.P}, nil
}

// wireResult is loadResult as the load subcommand prints it.
type wireResult struct {
	QPS    float64    `json:"qps"`
	Count  int64      `json:"count"`
	Errors int64      `json:"errors"`
	P      [4]float64 `json:"p"`
	Error  string     `json:"error,omitempty"`
}

// loadMain is the load subcommand: one fortio run, result as JSON on stdout. The
// driver runs it inside a namespace, where its connections start.
func loadMain(args []string) {
	log.SetLogLevel(log.Error)
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	url := fs.String("url", "", "target URL")
	qps := fs.Float64("qps", 1000, "requests per second; negative: as fast as possible")
	conns := fs.Int("connections", 16, "connections")
	d := fs.Duration("duration", 10*time.Second, "run length")
	_ = fs.Parse(args)
	res, err := load(*url, *qps, *conns, *d)
	w := wireResult{QPS: res.qps, Count: res.count, Errors: res.errors, P: res.p}
	if err != nil {
		w.Error = err.Error()
	}
	_ = json.NewEncoder(os.Stdout).Encode(w)
}

// netnsSetups returns the two setups over a pod pair: direct (the load generator as
// the proxy UID, which both pods' rules let through) and weft (the load generator as
// root dialling the ClusterIP, redirected through both proxies).
func netnsSetups(pp *podPair) []*setup {
	direct := &setup{name: "direct-netns", server: pp.server}
	direct.run = func(ctx context.Context, qps float64, conns int, d time.Duration) (loadResult, error) {
		return pp.load(ctx, nsServerTarget, nsProxyUID, qps, conns, d)
	}
	weft := &setup{name: "weft-netns", procs: pp.procs, server: pp.server}
	weft.run = func(ctx context.Context, qps float64, conns int, d time.Duration) (loadResult, error) {
		return pp.load(ctx, "http://"+nsClusterIP+"/echo?size=1024", 0, qps, conns, d)
	}
	return []*setup{direct, weft}
}
