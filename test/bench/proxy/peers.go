package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The nginx and Caddy pairs have the HAProxy pair's shape: the client side takes plain
// HTTP on loopback and forwards over mutual TLS 1.3 to the server side, which forwards
// plain HTTP/1.1 to the echo server. Both verify the peer's chain against the benchmark's
// CA and its host name (serverName); neither knows SPIFFE IDs. Connections to the next
// hop are kept alive and reused, as the Weft and HAProxy pairs do.

// nginxSetup runs two nginx processes (each a master and threads workers; one worker
// when threads is 0). nginx proxies to an upstream over HTTP/1.1 only, so between the
// two sides each in-flight request holds its own TLS connection, where Weft and
// HAProxy multiplex HTTP/2 streams on one.
func nginxSetup(ctx context.Context, dir, bin string, threads int, p *pki) (*setup, error) {
	workers := threads
	if workers <= 0 {
		workers = 1
	}
	common := func(role string) string {
		return fmt.Sprintf(`daemon off;
master_process on;
worker_processes %d;
pid %[2]s/nginx-%[3]s.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[2]s/nginx-%[3]s-body;
  proxy_temp_path %[2]s/nginx-%[3]s-proxy;
  fastcgi_temp_path %[2]s/nginx-%[3]s-fastcgi;
  uwsgi_temp_path %[2]s/nginx-%[3]s-uwsgi;
  scgi_temp_path %[2]s/nginx-%[3]s-scgi;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_buffering off;
`, workers, dir, role)
	}
	clientCfg := common("client") + fmt.Sprintf(`  upstream peer {
    server 127.0.0.1:%d;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass https://peer;
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate %s;
      proxy_ssl_certificate_key %s;
      proxy_ssl_trusted_certificate %s;
      proxy_ssl_verify on;
      proxy_ssl_name %s;
      proxy_ssl_session_reuse on;
    }
  }
}
`, nginxServerPort, nginxClientPort, p.client.Cert, p.client.Key, p.client.Roots, serverName)
	serverCfg := common("server") + fmt.Sprintf(`  upstream app {
    server %s;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:%d ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_client_certificate %s;
    ssl_verify_client on;
    location / {
      proxy_pass http://app;
    }
  }
}
`, serverAddr, nginxServerPort, p.serverDNS.Cert, p.serverDNS.Key, p.serverDNS.Roots)

	s := &setup{name: "nginx", target: fmt.Sprintf("http://127.0.0.1:%d/echo?size=1024", nginxClientPort)}
	for _, side := range []struct {
		role, cfg string
		port      int
	}{{"server", serverCfg, nginxServerPort}, {"client", clientCfg, nginxClientPort}} {
		cfgPath := filepath.Join(dir, "nginx-"+side.role+".conf")
		if err := os.WriteFile(cfgPath, []byte(side.cfg), 0o644); err != nil {
			return nil, fmt.Errorf("write config: %w", err)
		}
		// -p: the prefix for relative paths; -e: where errors go before the config's
		// error_log applies (the default is a system path).
		if err := s.startSide(ctx, dir, "nginx", side.role, nil, 10*time.Second, tcpReady(side.port), bin, "-p", dir, "-e", "stderr", "-c", cfgPath); err != nil {
			return nil, err
		}
	}
	s.procs[0], s.procs[1] = s.procs[1], s.procs[0]
	return s, nil
}

// caddySetup runs two Caddy processes (github.com/caddyserver/caddy/v2, built from the
// Go module proxy by make): reverse_proxy on both sides, HTTP/2 over mutual TLS 1.3
// between them (ALPN), HTTP/1.1 to the echo server. Like Weft it is a Go program, so
// threads sets GOMAXPROCS.
func caddySetup(ctx context.Context, dir, bin string, threads int, p *pki) (*setup, error) {
	type obj = map[string]any
	config := func(server obj) obj {
		return obj{
			// No admin endpoint (two processes would share its default port) and
			// nothing written outside the work directory.
			"admin":   obj{"disabled": true, "config": obj{"persist": false}},
			"logging": obj{"logs": obj{"default": obj{"level": "ERROR"}}},
			"storage": obj{"module": "file_system", "root": filepath.Join(dir, "caddy-storage")},
			"apps":    obj{"http": obj{"servers": obj{"bench": server}}},
		}
	}
	reverseProxy := func(upstream string, transport obj) []obj {
		h := obj{"handler": "reverse_proxy", "upstreams": []obj{{"dial": upstream}}}
		if transport != nil {
			h["transport"] = transport
		}
		return []obj{{"handle": []obj{h}}}
	}
	clientCfg := config(obj{
		"listen":          []string{fmt.Sprintf("127.0.0.1:%d", caddyClientPort)},
		"automatic_https": obj{"disable": true},
		"protocols":       []string{"h1"},
		"routes": reverseProxy(fmt.Sprintf("127.0.0.1:%d", caddyServerPort), obj{
			"protocol": "http",
			"versions": []string{"2"},
			"tls": obj{
				"ca":                          obj{"provider": "file", "pem_files": []string{p.client.Roots}},
				"client_certificate_file":     p.client.Cert,
				"client_certificate_key_file": p.client.Key,
				"server_name":                 serverName,
			},
		}),
	})
	serverCfg := config(obj{
		"listen":          []string{fmt.Sprintf("127.0.0.1:%d", caddyServerPort)},
		"automatic_https": obj{"disable": true},
		// No HTTP/3: it would listen on UDP as well.
		"protocols": []string{"h1", "h2"},
		// With client certificates Caddy wants the Host header to equal the TLS server
		// name by default; the pair forwards the caller's Host as HAProxy's and
		// nginx's do, and the server name is checked by the client side.
		"strict_sni_host": false,
		"tls_connection_policies": []obj{{
			"certificate_selection": obj{"any_tag": []string{"bench"}},
			"protocol_min":          "tls1.3",
			"client_authentication": obj{
				"ca":   obj{"provider": "file", "pem_files": []string{p.serverDNS.Roots}},
				"mode": "require_and_verify",
			},
		}},
		"routes": reverseProxy(serverAddr, nil),
	})
	serverCfg["apps"].(obj)["tls"] = obj{"certificates": obj{"load_files": []obj{{
		"certificate": p.serverDNS.Cert, "key": p.serverDNS.Key, "tags": []string{"bench"},
	}}}}

	s := &setup{name: "caddy", target: fmt.Sprintf("http://127.0.0.1:%d/echo?size=1024", caddyClientPort)}
	for _, side := range []struct {
		role string
		cfg  obj
		port int
	}{{"server", serverCfg, caddyServerPort}, {"client", clientCfg, caddyClientPort}} {
		b, err := json.MarshalIndent(side.cfg, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode caddy config: %w", err)
		}
		cfgPath := filepath.Join(dir, "caddy-"+side.role+".json")
		if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
			return nil, fmt.Errorf("write config: %w", err)
		}
		env := append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		if threads > 0 {
			env = append(env, fmt.Sprintf("GOMAXPROCS=%d", threads))
		}
		if err := s.startSide(ctx, dir, "caddy", side.role, env, 15*time.Second, tcpReady(side.port), bin, "run", "--config", cfgPath); err != nil {
			return nil, err
		}
	}
	s.procs[0], s.procs[1] = s.procs[1], s.procs[0]
	return s, nil
}
