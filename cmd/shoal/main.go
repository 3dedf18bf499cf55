// Command shoal is a Docker-aware, auto-discovering HTTP load balancer.
//
//	shoal [flags]          run the proxy
//	shoal status [flags]   print pools and backends from the admin API
//	shoal healthcheck      exit 0 when the admin /healthz answers (for HEALTHCHECK)
//	shoal version          print the version
//
// Every flag has an env twin: --label-prefix is SHOAL_LABEL_PREFIX.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/shoal-lb/shoal/discovery"
	"github.com/shoal-lb/shoal/lb"
	"github.com/shoal-lb/shoal/proxy"
)

// version is set at build time by the Makefile.
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version", "--version", "-version":
			fmt.Fprintln(stdout, "shoal", version)
			return 0
		case "status":
			return statusMain(args[1:], stdout)
		case "healthcheck":
			return healthcheck(args[1:], stderr)
		}
	}
	o, err := parseOptions(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "shoal:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, o, stdout); err != nil {
		fmt.Fprintln(stderr, "shoal:", err)
		return 1
	}
	return 0
}

// serve builds the parts, runs them until ctx ends, and shuts down in order:
// stop accepting, let in-flight requests finish, stop discovery.
func serve(ctx context.Context, o *options, stdout io.Writer) error {
	var fileCfg *discovery.FileConfig
	if o.config != "" {
		data, err := os.ReadFile(o.config)
		if err != nil {
			return err
		}
		if fileCfg, err = discovery.ParseConfig(o.config, data); err != nil {
			return err
		}
		applyFileGlobals(o, fileCfg)
	}

	logs := newLogOutput(stdout, o.logFormat)
	defer logs.Close()
	level, err := zerolog.ParseLevel(o.logLevel)
	if err != nil || o.logLevel == "" {
		return fmt.Errorf("--log-level %q: expected debug, info, warn or error", o.logLevel)
	}
	log := zerolog.New(logs).Level(level).With().Timestamp().Logger()
	trusted, err := parsePrefixes(o.trustedProxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := proxy.NewMetrics(reg)

	bctx, cancelBalancer := context.WithCancel(context.Background())
	defer cancelBalancer()
	bl := lb.New(bctx, lb.Config{
		Log:           log,
		DefaultPool:   o.defaultPool,
		OnState:       metrics.BackendState,
		OnHealthCheck: metrics.HealthCheck,
	})

	var accessLog *zerolog.Logger
	if o.accessLog {
		al := zerolog.New(logs.access).With().Timestamp().Str("component", "access").Logger()
		accessLog = &al
	}
	px := proxy.New(proxy.Config{
		Tables:         bl,
		Log:            log,
		AccessLog:      accessLog,
		Observer:       metrics,
		TrustedProxies: trusted,
		ConnectTimeout: o.connectTimeout,
		BackendTimeout: o.backendTimeout,
	})

	var workers sync.WaitGroup
	dctx, stopDiscovery := context.WithCancel(context.Background())
	defer func() {
		stopDiscovery()
		workers.Wait()
	}()

	if o.config != "" {
		w := &discovery.FileConfigWatcher{
			Path: o.config,
			Sink: bl,
			Log:  log,
			OnReload: func(cfg *discovery.FileConfig, err error) {
				metrics.ConfigReload(err == nil)
				if cfg != nil && cfg.DefaultPool != "" && !o.set["default-pool"] {
					bl.SetDefaultPool(cfg.DefaultPool)
				}
			},
		}
		if _, err := w.Load(); err != nil {
			return err
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			if err := w.Run(dctx); err != nil {
				log.Error().Err(err).Msg("cannot watch the config file; changes need a restart")
			}
		}()
	}

	if o.docker {
		api, err := discovery.NewDockerClient()
		if err != nil {
			return fmt.Errorf("docker client: %w", err)
		}
		defer api.Close()
		d := discovery.NewDocker(discovery.DockerConfig{
			API:             api,
			Sink:            bl,
			Log:             log,
			Events:          bl.Events(),
			LabelPrefix:     o.labelPrefix,
			Network:         o.network,
			ExposeByDefault: o.exposeByDefault,
			Resync:          o.resync,
			OnEvent:         metrics.DiscoveryEvent,
			OnError:         func(error) { metrics.DiscoveryError() },
			OnConnected:     metrics.DockerConnected,
		})
		if err := d.Check(ctx); err != nil {
			return fmt.Errorf("--network: %w", err)
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			d.Run(dctx)
		}()
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	srv := px.Server(proxy.ServerConfig{})
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()

	var adminHandler http.Handler = proxy.NewAdmin(proxy.AdminConfig{
		Balancer: bl,
		Token:    o.adminToken,
		Metrics:  metrics,
		Log:      log,
		Version:  version,
	})
	if o.pprof {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.Handle("/", adminHandler)
		adminHandler = mux
	}
	admin := &http.Server{
		Handler:           adminHandler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
	}
	var adminLn net.Listener
	if o.admin != "" && o.admin != "off" {
		if adminLn, err = net.Listen("tcp", o.admin); err != nil {
			srv.Shutdown()
			return fmt.Errorf("--admin: %w", err)
		}
		go func() {
			if err := admin.Serve(adminLn); err != nil && err != http.ErrServerClosed {
				serveErr <- fmt.Errorf("admin: %w", err)
			}
		}()
	}
	log.Info().Str("listen", ln.Addr().String()).Str("admin", o.admin).Str("version", version).
		Bool("docker", o.docker).Str("network", o.network).Msg("shoal started")

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return err
	}
	log.Info().Dur("timeout", o.shutdownTimeout).Msg("shutting down: no new connections, finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		log.Warn().Err(err).Msg("in-flight requests did not finish within --shutdown-timeout")
	}
	admin.Shutdown(sctx)
	log.Info().Msg("stopped")
	return nil
}

// applyFileGlobals takes global settings from the config file for every
// flag that was not given on the command line or by env.
func applyFileGlobals(o *options, c *discovery.FileConfig) {
	str := func(flagName string, dst *string, v string) {
		if v != "" && !o.set[flagName] {
			*dst = v
		}
	}
	boolean := func(flagName string, dst *bool, v *bool) {
		if v != nil && !o.set[flagName] {
			*dst = *v
		}
	}
	str("listen", &o.listen, c.Listen)
	str("admin", &o.admin, c.Admin)
	str("network", &o.network, c.Network)
	str("label-prefix", &o.labelPrefix, c.LabelPrefix)
	str("default-pool", &o.defaultPool, c.DefaultPool)
	str("log-level", &o.logLevel, c.LogLevel)
	str("trusted-proxies", &o.trustedProxies, strings.Join(c.TrustedProxies, ","))
	boolean("expose-by-default", &o.exposeByDefault, c.ExposeByDefault)
	boolean("docker", &o.docker, c.Docker)
	boolean("access-log", &o.accessLog, c.AccessLog)
}

func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, fmt.Errorf("%q: expected a CIDR such as 10.0.0.0/8", part)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q: expected a CIDR such as 10.0.0.0/8", part)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// healthcheck is the container HEALTHCHECK: GET /healthz on the admin address.
func healthcheck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	def := os.Getenv(envName("admin"))
	if def == "" {
		def = "127.0.0.1:9180"
	}
	admin := fs.String("admin", def, "admin address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + *admin + "/healthz")
	if err != nil {
		fmt.Fprintln(stderr, "shoal healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "shoal healthcheck: status", resp.StatusCode)
		return 1
	}
	return 0
}

// logOutput writes log lines. The access log goes through a buffer that is
// flushed every 100ms, so that a request does not cost a write syscall.
type logOutput struct {
	io.Writer
	access *bufferedWriter
}

func newLogOutput(w io.Writer, format string) *logOutput {
	if format == "console" || (format == "auto" && isTerminal(w)) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	sw := &syncWriter{w: w}
	return &logOutput{Writer: sw, access: newBufferedWriter(sw, 100*time.Millisecond)}
}

func (l *logOutput) Close() { l.access.Close() }

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}
