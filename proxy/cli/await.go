package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

// AwaitCommand is the subcommand the injector runs as the proxy container's postStart
// hook: `weft-proxy await` returns once the proxy in the same container answers /ready.
//
// Why a hook and not only a startup probe: the kubelet starts the next container of a
// pod only once a native sidecar's postStart hook has returned and, if it has one, its
// startup probe has passed. A startup probe runs on its own ticker (at least 1 s apart)
// and only once the kubelet's status shows the container running, so a proxy that holds
// its certificate 30 ms after it starts still held the app back for one to two probe
// periods. The hook returns within one poll interval of the proxy being ready.
const AwaitCommand = "await"

// Await's defaults; the injector passes the admin port and the timeout explicitly.
const (
	// DefaultAwaitTimeout matches what the startup probe allowed before (120 checks
	// a second apart): time for the identity service to come up with the pod.
	DefaultAwaitTimeout = 2 * time.Minute
	// awaitMaxInterval bounds the poll interval: it grows from 5 ms, so a proxy that
	// is ready in milliseconds is seen in milliseconds, and one that waits for the
	// control plane costs at most 20 requests a second on loopback.
	awaitMaxInterval = 50 * time.Millisecond
	// awaitRequestTimeout bounds one /ready request; the admin server answers it
	// from memory.
	awaitRequestTimeout = time.Second
)

// awaitFlags are the await subcommand's options.
type awaitFlags struct {
	adminAddr string
	adminPort int
	timeout   time.Duration
}

func parseAwaitFlags(args []string, stderr io.Writer) (*awaitFlags, error) {
	f := &awaitFlags{}
	fs := flag.NewFlagSet("weft-proxy await", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1", "the proxy's admin server address")
	fs.IntVar(&f.adminPort, "admin-port", config.DefaultAdminPort, "the proxy's admin server port")
	fs.DurationVar(&f.timeout, "timeout", DefaultAwaitTimeout, "how long to wait for /ready before failing (the kubelet then restarts the proxy)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if f.adminPort <= 0 || f.adminPort > 65535 {
		return nil, fmt.Errorf("--admin-port %d: want a port number 1..65535", f.adminPort)
	}
	if f.timeout <= 0 {
		return nil, fmt.Errorf("--timeout %s: want a positive duration", f.timeout)
	}
	return f, nil
}

// runAwait is `weft-proxy await`: exit 0 once /ready answers 200, 1 when the timeout
// passes first (the message, which the kubelet puts into the FailedPostStartHook
// event, says what was last seen), 2 on bad arguments.
func runAwait(args []string, stderr io.Writer) int {
	f, err := parseAwaitFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "weft-proxy await:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(f.adminAddr, strconv.Itoa(f.adminPort)) + "/ready"
	if err := awaitReady(ctx, url); err != nil {
		fmt.Fprintf(stderr, "weft-proxy await: the proxy was not ready within %s: %v; see the weft-proxy container's log\n", f.timeout, err)
		return 1
	}
	return 0
}

// awaitReady polls url until it answers 200 or ctx ends, and returns the last
// failure seen.
func awaitReady(ctx context.Context, url string) error {
	// No proxy from the environment, no keep-alive pool to leak: one short request
	// to loopback at a time.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: awaitRequestTimeout}
	interval := 5 * time.Millisecond
	var last error
	for {
		err := probeReady(ctx, client, url)
		if err == nil {
			return nil
		}
		// A probe the deadline cut short saw nothing; keep what an earlier one saw
		// (a 503, a refused connection), which says why the proxy is not ready.
		if ctx.Err() == nil || last == nil {
			last = err
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return last
		case <-t.C:
		}
		interval = min(2*interval, awaitMaxInterval)
	}
}

func probeReady(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	// The body is "ready" or "not ready"; nothing in it is needed.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/ready answered %s", resp.Status)
	}
	return nil
}
