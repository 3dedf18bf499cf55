package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Target names, in the order they run and appear in the tables.
const (
	nameShoal   = "Shoal"
	nameNginx   = "NGINX"
	nameHAProxy = "HAProxy"
	nameDirect  = "direct"
)

// target is one thing wrk drives: a proxy, or a backend with none.
type target struct {
	Name    string
	Addr    string   // host:port wrk hits
	Proc    *proc    // the proxy process; nil for direct
	Argv    []string // how it was started, for the report
	Env     []string // extra environment it was started with
	CfgName string   // its generated config file's name, if any
	Cfg     string   // and contents
	Admin   string   // Shoal's admin address
	Note    string   // why it is absent, if it could not be started
}

// freePort asks the kernel for an unused loopback port. Another process
// could take it before we bind it; the start then fails with a clear error.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startBackends runs n copies of this binary in -serve-backend mode.
func startBackends(ctx context.Context, sup *supervisor, n int) ([]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary for the backends: %w", err)
	}
	var addrs []string
	for i := 0; i < n; i++ {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := sup.start(fmt.Sprintf("backend %d", i+1), nil, self, "-serve-backend", addr)
		if err != nil {
			return nil, err
		}
		if err := waitServing(ctx, p, "http://"+addr+smallPath, 10*time.Second); err != nil {
			return nil, err
		}
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// startNginx runs nginx in the foreground with its prefix, pid file, temp
// dirs and error log under dir.
func startNginx(ctx context.Context, sup *supervisor, bin, dir string, backends []string, workers int) (*target, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	ndir := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(ndir, 0o755); err != nil {
		return nil, err
	}
	cfg := nginxConfig(ndir, listen, backends, workers)
	path := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	argv := []string{bin, "-p", ndir, "-e", filepath.Join(ndir, "error.log"), "-c", path, "-g", "daemon off;"}
	return startProxy(ctx, sup, &target{Name: nameNginx, Addr: listen, Argv: argv, CfgName: "nginx.conf", Cfg: cfg})
}

// startHAProxy runs haproxy in the foreground (-db) as one process with
// `workers` threads.
func startHAProxy(ctx context.Context, sup *supervisor, bin, dir string, backends []string, workers int) (*target, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := haproxyConfig(listen, backends, workers)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	argv := []string{bin, "-f", path, "-db"}
	return startProxy(ctx, sup, &target{Name: nameHAProxy, Addr: listen, Argv: argv, CfgName: "haproxy.cfg", Cfg: cfg})
}

// startShoal runs bin/shoal without Docker on a static pool, GOMAXPROCS set
// to the workers of the others, and waits for its /healthz.
func startShoal(ctx context.Context, sup *supervisor, bin, dir string, backends []string, workers int) (*target, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := shoalConfig(backends)
	path := filepath.Join(dir, "shoal.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	argv := []string{bin, "--docker=false", "--config", path, "--listen", listen, "--admin", admin, "--access-log=false", "--log-level", "warn"}
	env := []string{"GOMAXPROCS=" + strconv.Itoa(workers)}
	t := &target{Name: nameShoal, Addr: listen, Argv: argv, Env: env, CfgName: "shoal.yaml", Cfg: cfg, Admin: admin}
	p, err := sup.start(t.Name, env, argv...)
	if err != nil {
		return nil, err
	}
	t.Proc = p
	if err := waitServing(ctx, p, "http://"+admin+"/healthz", 15*time.Second); err != nil {
		return nil, err
	}
	return t, verifyTarget(ctx, t)
}

func startProxy(ctx context.Context, sup *supervisor, t *target) (*target, error) {
	p, err := sup.start(t.Name, t.Env, t.Argv...)
	if err != nil {
		return nil, err
	}
	t.Proc = p
	if err := waitServing(ctx, p, "http://"+t.Addr+smallPath, 15*time.Second); err != nil {
		return nil, err
	}
	return t, verifyTarget(ctx, t)
}

var probeClient = &http.Client{Timeout: 2 * time.Second}

// waitServing polls url until it answers 200, p exits, or the time is up.
func waitServing(ctx context.Context, p *proc, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for {
		if ok, err := p.exited(); ok {
			return fmt.Errorf("%s exited before it served %s (%v); its output:\n%s", p.name, url, err, p.log)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := probeClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not serve %s within %s: last answer: %v; its output:\n%s", p.name, url, limit, last, p.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// verifyTarget checks that both bodies come back whole through t, so that a
// proxy answering errors fast cannot top the table.
func verifyTarget(ctx context.Context, t *target) error {
	for _, c := range []struct {
		path string
		want []byte
	}{{smallPath, smallBody}, {largePath, largeBody}} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.Addr+c.path, nil)
		resp, err := probeClient.Do(req)
		if err != nil {
			return fmt.Errorf("%s: GET %s: %w", t.Name, c.path, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%s: GET %s: reading body: %w", t.Name, c.path, err)
		}
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, c.want) {
			return fmt.Errorf("%s: GET %s answered %s with %d bytes, want 200 with the backend's %d bytes", t.Name, c.path, resp.Status, len(got), len(c.want))
		}
	}
	return nil
}

// commandLine renders env and argv as a shell line for the report.
func commandLine(env, argv []string) string {
	parts := append([]string{}, env...)
	for _, a := range argv {
		if a == "" || strings.ContainsAny(a, " ;'\"$\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// lookPath is exec.LookPath, also searching the sbin directories that a
// non-login root shell may lack (Debian puts nginx and haproxy there).
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or /usr/sbin", name)
}
