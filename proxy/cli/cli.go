// Package cli is weft-proxy's command line: flags, logging, wiring of the listeners,
// identity, admin server and signal handling. cmd/weft-proxy only calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/admin"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/discovery"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/server"
	"github.com/weftmesh/weft/proxy/tap"
	"github.com/weftmesh/weft/proxy/transport"
)

// Flags are weft-proxy's command-line options (docs/proxy.md lists them).
type Flags struct {
	Config        string
	ListenAddr    string
	OutboundPort  int
	InboundPort   int
	AdminPort     int
	AdminAddr     string
	IdentityMode  string
	IdentityCert  string
	IdentityKey   string
	IdentityRoots string
	IdentityAddr  string
	IdentityName  string
	IdentityToken string
	IdentitySrv   string
	OpaquePorts   string
	InboundPolicy string
	// ClusterNetworks ("10.0.0.0/8,fd00::/8") are the cluster's networks: the clients
	// the cluster-* inbound policies admit, and the addresses where a peer proxy is
	// probed for before any plaintext. ProbePaths ("8080:/healthz,9090:/ready") feed
	// the inbound policy the proxy enforces before the control plane's.
	ClusterNetworks string
	ProbePaths      string
	// PodName is the proxy's pod (env POD_NAME): whose inbound policy it watches.
	PodName        string
	DetectTimeout  time.Duration
	ReloadInterval time.Duration
	LogLevel       string
	LogFormat      string
	ShutdownGrace  time.Duration
	ConnectTimeout time.Duration
	// HTTP timeouts and limits: server.Options fields of the same names.
	HeaderReadTimeout, WriteTimeout, IdleConnTimeout time.Duration
	MaxHeaderBytes                                   int
	// DestinationAddr is the destination service; empty: static destinations only.
	DestinationAddr string
	// DestinationServerName is the name the destination service's certificate must
	// carry (default: the host of DestinationAddr).
	DestinationServerName string
	// DestinationIdleTimeout is how long a destination may go unused before its
	// subscription is cancelled.
	DestinationIdleTimeout time.Duration
	// Namespace is the proxy's pod namespace (env POD_NAMESPACE), sent to the
	// destination service as the client's namespace.
	Namespace string
	// Threads is GOMAXPROCS; 0 keeps the Go runtime's choice.
	Threads int
	// UnsafeLoopbackApps lets the inbound side forward to loopback addresses, for
	// tests and local demos only (server.Options.UnsafeLoopbackApps). Deliberately a
	// flag without an environment variable: the injector builds the proxy's
	// arguments itself and never passes it, and no annotation maps to it.
	UnsafeLoopbackApps bool
	// TCPIdleTimeout, MaxInboundConnections and MaxOutboundConnections override the
	// configuration's tcpIdleTimeout and inbound/outbound maxConnections when set.
	TCPIdleTimeout         time.Duration
	MaxInboundConnections  int
	MaxOutboundConnections int
	// IdentityRenewAt is the share of its life (percent) after which the mesh-mode
	// certificate is renewed, before jitter.
	IdentityRenewAt int

	// warn reports a setting applyOverrides replaced with a safer one (logged once
	// the logger exists).
	warn func(error)
	// MeshTLSMode configures how connections to addresses the destination service
	// has not described go out (server.Options.MeshTLS): Opportunistic or Strict.
	// The injector sets it from the Mesh.
	MeshTLSMode string
	// TapPort is the tap server's port; TapIdentity the one SPIFFE ID that may tap
	// (env WEFT_TAP_IDENTITY, the control plane's tap identity). Without a tap
	// identity or an identity, the proxy has no tap server.
	TapPort     int
	TapIdentity string
}

func parseFlags(args []string) (*Flags, error) {
	f := &Flags{}
	fs := flag.NewFlagSet("weft-proxy", flag.ContinueOnError)
	fs.StringVar(&f.Config, "config", "", "static configuration file (YAML or JSON)")
	fs.StringVar(&f.ListenAddr, "listen-addr", "", "address of the outbound and inbound listeners (empty: all)")
	fs.IntVar(&f.OutboundPort, "outbound-port", config.DefaultOutboundPort, "outbound listener port")
	fs.IntVar(&f.InboundPort, "inbound-port", config.DefaultInboundPort, "inbound listener port")
	fs.IntVar(&f.AdminPort, "admin-port", config.DefaultAdminPort, "admin server port")
	fs.StringVar(&f.AdminAddr, "admin-addr", "", "admin server address (empty: all)")
	fs.IntVar(&f.TapPort, "tap-port", meshdefaults.TapPort, "tap server port (mTLS, the tap identity only)")
	fs.StringVar(&f.TapIdentity, "tap-identity", os.Getenv("WEFT_TAP_IDENTITY"), "the only SPIFFE ID that may tap this proxy, the control plane's tap identity; empty: no tap server (env WEFT_TAP_IDENTITY)")
	fs.StringVar(&f.IdentityMode, "identity-mode", "files", "files, mesh or disabled")
	fs.StringVar(&f.IdentityCert, "identity-cert", "", "files mode: PEM certificate chain")
	fs.StringVar(&f.IdentityKey, "identity-key", "", "files mode: PEM private key")
	fs.StringVar(&f.IdentityRoots, "identity-roots", "", "PEM trust roots")
	fs.StringVar(&f.IdentityAddr, "identity-addr", os.Getenv("WEFT_IDENTITY_ADDR"), "mesh mode: identity service host:port (env WEFT_IDENTITY_ADDR)")
	fs.StringVar(&f.IdentityName, "identity-name", os.Getenv("WEFT_IDENTITY_LOCAL_NAME"), "mesh mode: this proxy's SPIFFE ID (env WEFT_IDENTITY_LOCAL_NAME)")
	fs.StringVar(&f.IdentityToken, "identity-token", envOr("WEFT_IDENTITY_TOKEN_FILE", "/var/run/weft/identity/token"), "mesh mode: projected ServiceAccount token file (env WEFT_IDENTITY_TOKEN_FILE)")
	fs.StringVar(&f.IdentitySrv, "identity-server-name", os.Getenv("WEFT_IDENTITY_SERVER_NAME"), "mesh mode: name the identity service's certificate must carry, DNS or spiffe:// (default: the host of --identity-addr; env WEFT_IDENTITY_SERVER_NAME)")
	fs.IntVar(&f.IdentityRenewAt, "identity-renew-at-percent", identity.DefaultRenewAtPercent, fmt.Sprintf("mesh mode: renew the certificate after this share of its life, %d to %d, moved at random by up to %d points (the injector passes the Mesh's spec.identity.workload.renewAtPercent)", identity.RenewMinPercent, identity.RenewMaxPercent, identity.RenewJitterPercent))
	fs.StringVar(&f.OpaquePorts, "opaque-ports", os.Getenv("WEFT_OPAQUE_PORTS"), "ports and ranges (\"25,3306,4000-4010\") added to the configuration's opaquePorts (env WEFT_OPAQUE_PORTS)")
	fs.StringVar(&f.InboundPolicy, "default-inbound-policy", os.Getenv("WEFT_DEFAULT_INBOUND_POLICY"), "overrides inbound.defaultPolicy (env WEFT_DEFAULT_INBOUND_POLICY)")
	fs.StringVar(&f.ClusterNetworks, "cluster-networks", os.Getenv("WEFT_CLUSTER_NETWORKS"), "comma-separated CIDRs of the cluster's pods and nodes: the clients the cluster-* inbound policies admit, and the addresses discovery has not described where a peer proxy is probed for before any plaintext; overrides inbound.clusterNetworks (env WEFT_CLUSTER_NETWORKS; empty: the Mesh's default private ranges with --destination-addr)")
	fs.StringVar(&f.ProbePaths, "inbound-probe-paths", os.Getenv("WEFT_INBOUND_PROBE_PATHS"), "the pod's HTTP probes as port:path,port:path, admitted under any inbound policy; added to inbound.probePaths (env WEFT_INBOUND_PROBE_PATHS)")
	fs.DurationVar(&f.DetectTimeout, "detect-timeout", envDuration("WEFT_DETECT_TIMEOUT"), "overrides detectTimeout (env WEFT_DETECT_TIMEOUT)")
	fs.DurationVar(&f.ReloadInterval, "identity-reload-interval", 2*time.Second, "how often identity files are checked for changes")
	fs.StringVar(&f.LogLevel, "log-level", "info", "error, info, debug or a verbosity number")
	fs.StringVar(&f.LogFormat, "log-format", "json", "json or console")
	fs.DurationVar(&f.ShutdownGrace, "shutdown-grace", 30*time.Second, "how long in-flight work may take after SIGTERM or /shutdown")
	fs.DurationVar(&f.ConnectTimeout, "connect-timeout", 3*time.Second, "timeout for dialling endpoints and peer proxies")
	fs.DurationVar(&f.HeaderReadTimeout, "header-read-timeout", 10*time.Second, "how long a client may take to send a request header once it started one")
	fs.IntVar(&f.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request header accepted (larger: 431)")
	fs.DurationVar(&f.WriteTimeout, "write-timeout", 5*time.Minute, "how long one write to an app, client or peer may block before the connection is closed")
	fs.DurationVar(&f.IdleConnTimeout, "idle-conn-timeout", 90*time.Second, "how long connections to backends and peer proxies may stay idle (swept on a timer)")
	fs.StringVar(&f.DestinationAddr, "destination-addr", os.Getenv("WEFT_DESTINATION_ADDR"), "destination service host:port; empty: only the static configuration's destinations (env WEFT_DESTINATION_ADDR)")
	fs.StringVar(&f.DestinationServerName, "destination-server-name", os.Getenv("WEFT_DESTINATION_SERVER_NAME"), "name the destination service's certificate must carry, DNS or spiffe:// (default: the host of --destination-addr; env WEFT_DESTINATION_SERVER_NAME)")
	fs.DurationVar(&f.DestinationIdleTimeout, "destination-idle-timeout", discovery.DefaultIdleTimeout, "how long a destination may go without traffic before its subscription to the destination service is cancelled")
	fs.DurationVar(&f.TCPIdleTimeout, "tcp-idle-timeout", envDuration("WEFT_TCP_IDLE_TIMEOUT"), "overrides tcpIdleTimeout: close opaque TCP connections idle this long (env WEFT_TCP_IDLE_TIMEOUT; default 1h)")
	fs.IntVar(&f.MaxInboundConnections, "max-inbound-connections", envInt("WEFT_MAX_INBOUND_CONNECTIONS", 0), "overrides inbound.maxConnections (env WEFT_MAX_INBOUND_CONNECTIONS; default 1024)")
	fs.IntVar(&f.MaxOutboundConnections, "max-outbound-connections", envInt("WEFT_MAX_OUTBOUND_CONNECTIONS", 0), "overrides outbound.maxConnections (env WEFT_MAX_OUTBOUND_CONNECTIONS; default 2048)")
	fs.BoolVar(&f.UnsafeLoopbackApps, "unsafe-loopback-apps", false, "TESTS AND LOCAL DEMOS ONLY: let the inbound side forward to loopback addresses (apps on 127.0.0.1); any client of the inbound port then reaches every localhost-only service of the host")
	fs.StringVar(&f.MeshTLSMode, "mesh-tls-mode", os.Getenv("WEFT_MESH_TLS_MODE"), "Opportunistic or Strict: whether plaintext may go to an in-cluster address that discovery has not described and where no proxy of the mesh answers (env WEFT_MESH_TLS_MODE; default Opportunistic)")
	f.Namespace = os.Getenv("POD_NAMESPACE")
	f.PodName = os.Getenv("POD_NAME")
	fs.IntVar(&f.Threads, "threads", defaultThreads(), "OS threads running Go code (GOMAXPROCS); 0: the Go runtime's default (one per core or the cgroup CPU limit). Default 1 unless GOMAXPROCS is set")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"outbound-port", f.OutboundPort}, {"inbound-port", f.InboundPort}, {"admin-port", f.AdminPort}, {"tap-port", f.TapPort}} {
		if p.v < 0 || p.v > 65535 {
			return nil, fmt.Errorf("--%s %d: want a port number 0..65535", p.name, p.v)
		}
	}
	return f, nil
}

// defaultThreads is 1 unless GOMAXPROCS is set. One thread is what a sidecar at
// ordinary rates needs, and it is much cheaper per request: with more, every request
// wakes goroutines on other threads (futex, nanosleep and epoll calls of idle threads
// looking for work). Measured on the proxy benchmark, one thread cut CPU per request
// by about 25% and raised the pair's saturation throughput on two cores.
func defaultThreads() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0
	}
	return 1
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func listenerPort(ln net.Listener) uint16 {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		return uint16(a.Port)
	}
	return 0
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

func envDuration(name string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(name))
	return d
}

// parsePortRanges reads "25,3306,4000-4010".
func parsePortRanges(s string) ([]uint16, error) {
	var out []uint16
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || a == 0 || b < a {
			return nil, fmt.Errorf("invalid port or range %q", part)
		}
		for p := a; p <= b; p++ {
			out = append(out, uint16(p))
		}
	}
	return out, nil
}

// parseProbePaths reads "8080:/healthz,9090:/ready" (the injector resolved named
// ports already).
func parseProbePaths(s string) ([]config.ProbePath, error) {
	var out []config.ProbePath
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		port, path, ok := strings.Cut(part, ":")
		n, err := strconv.ParseUint(port, 10, 16)
		if !ok || err != nil || n == 0 || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("invalid probe %q (want port:/path)", part)
		}
		out = append(out, config.ProbePath{Port: uint16(n), Path: path})
	}
	return out, nil
}

// meshTLSOptions reads --mesh-tls-mode and --cluster-networks.
func meshTLSOptions(f *Flags) (transport.FallbackOptions, error) {
	o := transport.FallbackOptions{InboundPort: uint16(f.InboundPort)}
	var err error
	if o.Mode, err = transport.ParseTLSMode(f.MeshTLSMode); err != nil {
		return o, fmt.Errorf("--mesh-tls-mode: %w", err)
	}
	networks := f.ClusterNetworks
	if networks == "" && f.DestinationAddr != "" {
		// A proxy of the mesh whose injector passed none: the Mesh's default (the
		// Mesh requires at least one range), so that a meshed pod never goes without
		// the probe.
		networks = strings.Join(meshdefaults.ClusterNetworks(), ",")
	}
	for c := range strings.SplitSeq(networks, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return o, fmt.Errorf("--cluster-networks: %q is not a CIDR such as 10.0.0.0/8: %w", c, err)
		}
		o.ClusterNetworks = append(o.ClusterNetworks, p.Masked())
	}
	return o, nil
}

// applyOverrides merges command-line (or injected environment) settings into the
// configuration and validates the result.
func applyOverrides(cfg *config.Config, f *Flags) error {
	if f.OpaquePorts != "" {
		ports, err := parsePortRanges(f.OpaquePorts)
		if err != nil {
			return fmt.Errorf("--opaque-ports: %w", err)
		}
		cfg.OpaquePorts = append(cfg.OpaquePorts, ports...)
	}
	if f.InboundPolicy != "" {
		p := config.Policy(f.InboundPolicy)
		if !config.KnownPolicy(p) {
			// A name from a newer injector or a typo: deny (probes still pass)
			// rather than refuse to start or, worse, admit everyone.
			p = config.PolicyDeny
			err := fmt.Errorf("--default-inbound-policy %q is not a policy this proxy knows; denying every client until the control plane sends the pod's policy", f.InboundPolicy)
			if f.warn != nil {
				f.warn(err)
			}
		}
		cfg.Inbound.DefaultPolicy = p
	}
	if f.ClusterNetworks != "" {
		cfg.Inbound.ClusterNetworks = nil
		for _, n := range strings.Split(f.ClusterNetworks, ",") {
			if n = strings.TrimSpace(n); n != "" {
				cfg.Inbound.ClusterNetworks = append(cfg.Inbound.ClusterNetworks, n)
			}
		}
	}
	if f.ProbePaths != "" {
		pps, err := parseProbePaths(f.ProbePaths)
		if err != nil {
			return fmt.Errorf("--inbound-probe-paths: %w", err)
		}
		cfg.Inbound.ProbePaths = append(cfg.Inbound.ProbePaths, pps...)
	}
	if f.DetectTimeout > 0 {
		cfg.DetectTimeout.Duration = f.DetectTimeout
	}
	if f.TCPIdleTimeout != 0 {
		cfg.TCPIdleTimeout.Duration = f.TCPIdleTimeout
	}
	if f.MaxInboundConnections != 0 {
		cfg.Inbound.MaxConnections = f.MaxInboundConnections
	}
	if f.MaxOutboundConnections != 0 {
		cfg.Outbound.MaxConnections = f.MaxOutboundConnections
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.ApplyDefaults()
	return nil
}

// reloadConfig re-reads --config on SIGHUP. A file that does not parse is logged and
// the running configuration kept; connections accepted afterwards use the new one.
func reloadConfig(f *Flags, srv *server.Server, log logr.Logger) {
	if f.Config == "" {
		log.Info("SIGHUP ignored: no --config file")
		return
	}
	cfg, err := config.Load(f.Config)
	if err == nil {
		err = applyOverrides(cfg, f)
	}
	if err != nil {
		log.Error(err, "Reloading configuration failed, keeping the running one")
		return
	}
	srv.SetConfig(cfg)
	log.Info("Reloaded configuration", "destinations", len(cfg.Destinations))
}

// newDiscovery makes the destination service's client. It authenticates with the
// proxy's workload certificate, so it needs an identity; the client namespace is the
// pod's (POD_NAMESPACE), else the namespace of the proxy's SPIFFE ID, which the
// service requires them to be anyway.
func newDiscovery(f *Flags, store *identity.Store, log logr.Logger) (*discovery.Client, error) {
	if store == nil {
		return nil, errors.New("--destination-addr needs an identity (--identity-mode mesh or files): the destination service requires a client certificate")
	}
	if _, _, err := net.SplitHostPort(f.DestinationAddr); err != nil {
		return nil, fmt.Errorf("--destination-addr: %w", err)
	}
	ns := f.Namespace
	if ns == "" && f.IdentityName != "" {
		if id, err := config.ParseSPIFFEID(f.IdentityName); err == nil {
			ns = id.Namespace
		}
	}
	if ns == "" {
		return nil, errors.New("--destination-addr needs the pod's namespace: set POD_NAMESPACE")
	}
	log.Info("Discovering destinations", "addr", f.DestinationAddr, "serverName", f.DestinationServerName, "namespace", ns)
	return discovery.New(discovery.Options{Addr: f.DestinationAddr, ServerName: f.DestinationServerName,
		Namespace: ns, Identity: store, Log: log, IdleTimeout: f.DestinationIdleTimeout}), nil
}

// appendMetrics adds more series after the admin server's /metrics answer (the
// registry's series), so the destination client's counters are scraped with the rest.
func appendMetrics(h http.Handler, write func(io.Writer) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.URL.Path == "/metrics" && r.Method == http.MethodGet {
			_ = write(w)
		}
	})
}

// levelVar adapts zap's atomic level to admin.LevelVar, speaking logr's verbosity
// numbers: "debug" is V(1), "2" is V(2) (zap level -2).
type levelVar struct{ zap.AtomicLevel }

func (l levelVar) String() string {
	lv := l.Level()
	switch {
	case lv == zapcore.DebugLevel:
		return "debug"
	case lv < zapcore.DebugLevel:
		return strconv.Itoa(int(-lv))
	}
	return lv.String()
}

func (l levelVar) Set(s string) error {
	lv, err := parseLevel(s)
	if err != nil {
		return err
	}
	l.SetLevel(lv)
	return nil
}

func parseLevel(s string) (zapcore.Level, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 10 {
			return 0, fmt.Errorf("log level %d out of range 0..10", n)
		}
		return zapcore.Level(-n), nil
	}
	switch strings.ToLower(s) {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info":
		return zapcore.InfoLevel, nil
	case "warn", "warning":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want error, info, debug or a number)", s)
}

func newLogger(f *Flags) (logr.Logger, levelVar, error) {
	lv, err := parseLevel(f.LogLevel)
	if err != nil {
		return logr.Discard(), levelVar{}, err
	}
	atom := zap.NewAtomicLevelAt(lv)
	var enc zapcore.Encoder
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	switch f.LogFormat {
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return logr.Discard(), levelVar{}, fmt.Errorf("unknown log format %q", f.LogFormat)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), atom)
	return zapr.NewLogger(zap.New(core)), levelVar{atom}, nil
}

// Main runs weft-proxy and returns the process exit code.
func Main(args []string) int {
	f, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "weft-proxy:", err)
		return 2
	}
	if f.Threads < 0 {
		fmt.Fprintln(os.Stderr, "weft-proxy: --threads must not be negative")
		return 2
	}
	if f.Threads > 0 {
		runtime.GOMAXPROCS(f.Threads)
	}
	log, level, err := newLogger(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-proxy:", err)
		return 2
	}
	if err := run(f, log, level); err != nil {
		log.Error(err, "Proxy failed")
		return 1
	}
	return 0
}

func run(f *Flags, log logr.Logger, level levelVar) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cfg := &config.Config{}
	cfg.ApplyDefaults()
	if f.Config != "" {
		c, err := config.Load(f.Config)
		if err != nil {
			return err
		}
		cfg = c
	}
	f.warn = func(err error) { log.Error(err, "Unsafe setting replaced") }
	if err := applyOverrides(cfg, f); err != nil {
		return err
	}
	reg := metrics.New()
	var store *identity.Store
	var source identity.Source
	switch f.IdentityMode {
	case "disabled":
	case "files":
		if f.IdentityCert == "" || f.IdentityKey == "" || f.IdentityRoots == "" {
			return errors.New("identity mode files needs --identity-cert, --identity-key and --identity-roots (or --identity-mode=disabled)")
		}
		store = &identity.Store{}
		files := &identity.Files{CertPath: f.IdentityCert, KeyPath: f.IdentityKey, RootsPath: f.IdentityRoots,
			Interval: f.ReloadInterval, Store: store, Log: log.WithName("identity")}
		if err := files.Load(); err != nil {
			// Keep serving (plaintext works); /ready stays false until a reload succeeds.
			log.Error(err, "Loading identity files failed; not ready until they load")
		}
		source = files
	case "mesh":
		if f.IdentityAddr == "" || f.IdentityName == "" || f.IdentityRoots == "" {
			return errors.New("identity mode mesh needs --identity-addr, --identity-name and --identity-roots (or WEFT_IDENTITY_ADDR, WEFT_IDENTITY_LOCAL_NAME)")
		}
		if _, err := config.ParseSPIFFEID(f.IdentityName); err != nil {
			return fmt.Errorf("--identity-name: %w", err)
		}
		if f.IdentityRenewAt < identity.RenewMinPercent || f.IdentityRenewAt > identity.RenewMaxPercent {
			return fmt.Errorf("--identity-renew-at-percent=%d: must be between %d and %d", f.IdentityRenewAt, identity.RenewMinPercent, identity.RenewMaxPercent)
		}
		store = &identity.Store{}
		mesh := &identity.Mesh{Addr: f.IdentityAddr, ServerName: f.IdentitySrv, ID: f.IdentityName,
			TokenPath: f.IdentityToken, RootsPath: f.IdentityRoots, Interval: f.ReloadInterval,
			RenewAtPercent: f.IdentityRenewAt, Store: store, Log: log.WithName("identity")}
		source = mesh
	default:
		return fmt.Errorf("unknown --identity-mode %q (want files, mesh or disabled)", f.IdentityMode)
	}
	if source != nil {
		go source.Run(ctx)
		reg.CertExpiry = store.Expiry
	}
	var tp *tap.Tap
	switch {
	case f.TapIdentity == "":
	case store == nil:
		log.Info("No tap server: --tap-identity needs an identity (--identity-mode mesh or files) to authenticate the tap client")
	default:
		if _, _, _, ok := peertls.ParseWorkloadID(f.TapIdentity); !ok {
			return fmt.Errorf("--tap-identity %q: want spiffe://<trust domain>/ns/<namespace>/sa/<serviceaccount>", f.TapIdentity)
		}
		tp = tap.New(tap.Self{Pod: f.PodName, Namespace: f.Namespace, Identity: func() string {
			if b := store.Current(); b != nil {
				return b.ID
			}
			return ""
		}})
	}
	opts := server.Options{Log: log.WithName("proxy"), Identity: store, Metrics: reg, ConnectTimeout: f.ConnectTimeout, Tap: tp,
		HeaderReadTimeout: f.HeaderReadTimeout, MaxHeaderBytes: f.MaxHeaderBytes, WriteTimeout: f.WriteTimeout, IdleConnTimeout: f.IdleConnTimeout,
		ProxyPorts:         []uint16{uint16(f.OutboundPort), uint16(f.InboundPort), uint16(f.AdminPort), uint16(f.TapPort)},
		UnsafeLoopbackApps: f.UnsafeLoopbackApps}
	mtls, err := meshTLSOptions(f)
	if err != nil {
		return err
	}
	opts.MeshTLS = mtls
	if f.UnsafeLoopbackApps {
		log.Info("UNSAFE: --unsafe-loopback-apps is set: the inbound side forwards to loopback addresses; never use it in a pod")
	}
	var dc *discovery.Client
	if f.DestinationAddr != "" {
		var err error
		dc, err = newDiscovery(f, store, log.WithName("discovery"))
		if err != nil {
			return err
		}
		defer dc.Close()
		opts.Source = dc
	}
	outLn, err := net.Listen("tcp", net.JoinHostPort(f.ListenAddr, strconv.Itoa(f.OutboundPort)))
	if err != nil {
		return fmt.Errorf("outbound listener: %w", err)
	}
	inLn, err := net.Listen("tcp", net.JoinHostPort(f.ListenAddr, strconv.Itoa(f.InboundPort)))
	if err != nil {
		return fmt.Errorf("inbound listener: %w", err)
	}
	adminLn, err := net.Listen("tcp", net.JoinHostPort(f.AdminAddr, strconv.Itoa(f.AdminPort)))
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}

	var tapSrv *tap.Server
	var tapLn net.Listener
	if tp != nil {
		if tapLn, err = net.Listen("tcp", net.JoinHostPort(f.ListenAddr, strconv.Itoa(f.TapPort))); err != nil {
			return fmt.Errorf("tap listener: %w", err)
		}
		tapSrv = &tap.Server{Tap: tp, Identity: store, ClientID: f.TapIdentity, Log: log.WithName("tap")}
		opts.ProxyPorts = append(opts.ProxyPorts, listenerPort(tapLn))
	}

	// The ports actually bound (a flag of 0 picks one): the inbound side never
	// forwards to them.
	opts.ProxyPorts = append(opts.ProxyPorts, listenerPort(outLn), listenerPort(inLn), listenerPort(adminLn))
	srv := server.New(cfg, opts)
	if dc != nil {
		if f.PodName == "" {
			log.Info("POD_NAME is not set: the inbound policy stays the bootstrap one (WEFT_DEFAULT_INBOUND_POLICY) and never follows the cluster's policy resources")
		} else {
			dc.WatchInbound(f.PodName, srv.SetInboundPolicy)
		}
	}

	var shuttingDown atomic.Bool
	shutdown := make(chan struct{})
	var once sync.Once
	startShutdown := func() { once.Do(func() { shuttingDown.Store(true); close(shutdown) }) }

	adm := &admin.Admin{
		Metrics: reg,
		Ready: func() bool {
			return !shuttingDown.Load() && (store == nil || store.Ready())
		},
		Shutdown: startShutdown,
		Level:    level,
		Log:      log.WithName("admin"),
	}
	handler := adm.Handler()
	if dc != nil {
		handler = appendMetrics(handler, dc.WriteMetrics)
	}
	handler = appendMetrics(handler, tp.WriteMetrics)
	adminSrv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 4)
	go func() { errc <- srv.ServeOutbound(outLn) }()
	go func() { errc <- srv.ServeInbound(inLn) }()
	go func() {
		if err := adminSrv.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin server: %w", err)
		}
	}()
	tapAddr := ""
	if tapSrv != nil {
		tapAddr = tapLn.Addr().String()
		go func() {
			if err := tapSrv.Serve(tapLn); err != nil {
				errc <- fmt.Errorf("tap server: %w", err)
			}
		}()
	}
	log.Info("Proxy started", "outbound", outLn.Addr().String(), "inbound", inLn.Addr().String(),
		"admin", adminLn.Addr().String(), "tap", tapAddr, "identityMode", f.IdentityMode, "destinations", len(cfg.Destinations),
		"threads", runtime.GOMAXPROCS(0))

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var runErr error
wait:
	for {
		select {
		case <-hup:
			reloadConfig(f, srv, log)
		case s := <-sigc:
			log.Info("Shutting down", "signal", s.String(), "grace", f.ShutdownGrace)
			break wait
		case <-shutdown:
			log.Info("Shutting down", "grace", f.ShutdownGrace)
			break wait
		case runErr = <-errc:
			if runErr == nil {
				runErr = errors.New("listener stopped")
			}
			break wait
		}
	}
	startShutdown()
	sctx, scancel := context.WithTimeout(context.Background(), f.ShutdownGrace)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Info("Grace period over, closed remaining connections")
	}
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	_ = adminSrv.Shutdown(actx)
	if tapSrv != nil {
		_ = tapSrv.Shutdown(actx)
	}
	log.Info("Proxy stopped")
	return runErr
}
