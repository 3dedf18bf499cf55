package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// options are Shoal's settings, from flags, their SHOAL_ env twins and the
// config file, in that order of precedence.
type options struct {
	listen          string
	admin           string
	adminToken      string
	network         string
	config          string
	labelPrefix     string
	exposeByDefault bool
	defaultPool     string
	docker          bool
	logLevel        string
	logFormat       string
	accessLog       bool
	shutdownTimeout time.Duration
	trustedProxies  string
	resync          time.Duration
	connectTimeout  time.Duration
	backendTimeout  time.Duration
	pprof           bool

	set map[string]bool // flags given on the command line or by env
}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("shoal", flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", ":8080", "address the proxy listens on")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:9180", "address of the admin API, metrics and dashboard (loopback by default)")
	fs.StringVar(&o.adminToken, "admin-token", "", "bearer token required on every admin endpoint but /healthz")
	fs.StringVar(&o.network, "network", "", "Docker network to reach backends on; a compose network may be named without its project prefix (default: the networks Shoal's own container shares with each backend)")
	fs.StringVar(&o.config, "config", "", "YAML config file with static pools and settings; reloaded on change")
	fs.StringVar(&o.labelPrefix, "label-prefix", "shoal", "prefix of the container labels Shoal reads")
	fs.BoolVar(&o.exposeByDefault, "expose-by-default", false, "route to every container, not only those labelled <prefix>.enable=true")
	fs.StringVar(&o.defaultPool, "default-pool", "", "pool for requests no host or path rule matches, when several pools are catch-alls")
	fs.BoolVar(&o.docker, "docker", true, "discover backends from the Docker engine (false: static pools only)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "auto", "json, console, or auto (console on a terminal)")
	fs.BoolVar(&o.accessLog, "access-log", true, "log one line per request")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "time in-flight requests get to finish on SIGTERM/SIGINT")
	fs.StringVar(&o.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed for the client address")
	fs.DurationVar(&o.resync, "resync", 30*time.Second, "period of the full Docker resync that backs up the event stream")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 2*time.Second, "timeout for connecting to a backend")
	fs.DurationVar(&o.backendTimeout, "backend-timeout", 60*time.Second, "longest silence from a backend before 504")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go's profiler at /debug/pprof/ on the admin listener (no token check; keep the admin on loopback)")
	return fs
}

// envName is the env twin of a flag: --label-prefix is SHOAL_LABEL_PREFIX.
func envName(flagName string) string {
	return "SHOAL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseOptions reads flags, then fills each flag not given from its env twin.
func parseOptions(args []string) (*options, error) {
	o := &options{set: map[string]bool{}}
	fs := newFlagSet(o)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if o.set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, serr)
			}
			o.set[f.Name] = true
		}
	})
	return o, err
}
