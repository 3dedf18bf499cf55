package main

import (
	"fmt"
	"strings"
)

// The three proxies get equivalent setups: round robin over the same
// backends, keep-alive on both sides, no access log, the same number of
// workers/threads, and timeouts far above any latency the run produces.

// nginxConfig is nginx.conf for a proxy on listen in front of backends, with
// every path (pid, temp dirs, error log) under dir. nginx's default of 1000
// requests per keep-alive connection is raised on both sides, since Shoal and
// HAProxy have no such cap and wrk would otherwise measure reconnects.
func nginxConfig(dir, listen string, backends []string, workers int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `worker_processes %d;
worker_rlimit_nofile 8192;
pid %s/nginx.pid;
error_log %s/error.log error;

events {
    worker_connections 4096;
}

http {
    access_log off;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;

    upstream api {
`, workers, dir, dir)
	for _, be := range backends {
		fmt.Fprintf(&b, "        server %s;\n", be)
	}
	fmt.Fprintf(&b, `        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }

    server {
        listen %s;
        location / {
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 5s;
            proxy_send_timeout 60s;
            proxy_read_timeout 60s;
        }
    }
}
`, listen)
	return b.String()
}

// haproxyConfig is haproxy.cfg for the same setup. There is no "log" line,
// so HAProxy logs nothing.
func haproxyConfig(listen string, backends []string, workers int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    nbthread %d
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend fe
    bind %s
    default_backend api

backend api
    balance roundrobin
`, workers, listen)
	for i, be := range backends {
		fmt.Fprintf(&b, "    server s%d %s\n", i+1, be)
	}
	return b.String()
}

// shoalConfig is Shoal's config file: one static pool, in the default
// method, round robin.
func shoalConfig(backends []string) string {
	var b strings.Builder
	b.WriteString("pools:\n  api:\n    servers:\n")
	for _, be := range backends {
		fmt.Fprintf(&b, "      - address: %s\n", be)
	}
	return b.String()
}
