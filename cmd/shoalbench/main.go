// Command shoalbench is the benchmark harness behind `make bench`: on one
// machine, in one run, it puts Shoal, NGINX and HAProxy in front of the same
// loopback backends, drives each in turn with wrk, and writes the medians,
// with ratios to NGINX, to docs/benchmarks.md. With -soak it instead runs
// Shoal alone under load for ten minutes and records its memory and
// goroutines.
//
//	go run ./cmd/shoalbench [-soak] [-rounds N] [-duration D] [-backends N] [-out docs/benchmarks.md]
//
// Everything it starts (backends, proxies, wrk) is stopped when it ends,
// fails, or gets SIGINT/SIGTERM. It only ever targets 127.0.0.1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the harness's flags.
type config struct {
	Soak          bool
	Rounds        int           // rounds per case; default 3
	Duration      time.Duration // one wrk run; default 10s
	Warmup        time.Duration // unrecorded run per target and case; default 2s
	Backends      int           // default 3
	Workers       int           // proxy workers/threads/GOMAXPROCS; default runtime.NumCPU()
	Threads       int           // wrk threads; default 2
	Conns         []int         // default 50, 256
	Targets       []string      // default all four
	Out           string        // default docs/benchmarks.md
	Shoal         string        // default bin/shoal
	SoakDuration  time.Duration // default 10m
	SoakWarmup    time.Duration // default 1m
	SoakInterval  time.Duration // default 10s
	SoakConns     int           // default 256
	ServeBackend  string        // hidden: run as a backend on this address
	commandString string
}

var allTargets = []string{nameShoal, nameNginx, nameHAProxy, nameDirect}

func parseFlags(args []string) (config, error) {
	c := config{}
	fs := flag.NewFlagSet("shoalbench", flag.ContinueOnError)
	fs.BoolVar(&c.Soak, "soak", false, "run the soak (Shoal alone under load) instead of the comparison")
	fs.IntVar(&c.Rounds, "rounds", 3, "rounds per case; each round runs every target once")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "length of one wrk run (whole seconds)")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "unrecorded wrk run per target before each case's rounds; 0 for none")
	fs.IntVar(&c.Backends, "backends", 3, "number of backends behind each proxy")
	fs.IntVar(&c.Workers, "workers", runtime.NumCPU(), "workers of each proxy: nginx worker_processes, haproxy nbthread, Shoal GOMAXPROCS")
	fs.IntVar(&c.Threads, "threads", 2, "wrk threads")
	conns := fs.String("conns", "50,256", "comma-separated wrk connection counts")
	targets := fs.String("targets", strings.Join(allTargets, ","), "comma-separated targets to run, of "+strings.Join(allTargets, ", "))
	fs.StringVar(&c.Out, "out", "docs/benchmarks.md", "Markdown file to write")
	fs.StringVar(&c.Shoal, "shoal", "bin/shoal", "the Shoal binary (make build writes it)")
	fs.DurationVar(&c.SoakDuration, "soak-duration", 10*time.Minute, "length of the soak")
	fs.DurationVar(&c.SoakWarmup, "soak-warmup", time.Minute, "soak time before growth is measured")
	fs.DurationVar(&c.SoakInterval, "soak-interval", 10*time.Second, "soak sampling interval")
	fs.IntVar(&c.SoakConns, "soak-conns", 256, "wrk connections during the soak")
	fs.StringVar(&c.ServeBackend, "serve-backend", "", "internal: serve as a benchmark backend on this address")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q; every option is a flag, see -h", fs.Args())
	}
	var err error
	if c.Conns, err = parseInts("-conns", *conns); err != nil {
		return c, err
	}
	if c.Targets, err = parseTargets(*targets); err != nil {
		return c, err
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"-rounds", c.Rounds}, {"-backends", c.Backends}, {"-workers", c.Workers}, {"-threads", c.Threads}, {"-soak-conns", c.SoakConns}} {
		if v.n < 1 {
			return c, fmt.Errorf("%s %d: want 1 or more", v.name, v.n)
		}
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"-duration", c.Duration}, {"-soak-duration", c.SoakDuration}, {"-soak-interval", c.SoakInterval}} {
		if v.d < time.Second {
			return c, fmt.Errorf("%s %s: want at least 1s (wrk counts whole seconds)", v.name, v.d)
		}
	}
	if c.Warmup != 0 && c.Warmup < time.Second {
		return c, fmt.Errorf("-warmup %s: want 0 or at least 1s", c.Warmup)
	}
	c.commandString = "go run ./cmd/shoalbench"
	if len(args) > 0 {
		c.commandString += " " + strings.Join(args, " ")
	}
	return c, nil
}

func parseInts(flagName, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s %q: want positive integers separated by commas, like 50,256", flagName, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseTargets(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		found := false
		for _, t := range allTargets {
			if strings.EqualFold(f, t) {
				out, found = append(out, t), true
			}
		}
		if !found {
			return nil, fmt.Errorf("-targets: unknown target %q; want some of %s", f, strings.Join(allTargets, ","))
		}
	}
	return out, nil
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shoalbench:", err)
		os.Exit(2)
	}
	if c.ServeBackend != "" {
		if err := serveBackend(c.ServeBackend); err != nil {
			fmt.Fprintln(os.Stderr, "shoalbench backend:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	sup := &supervisor{}
	err = run(ctx, c, sup)
	interrupted := ctx.Err() != nil
	sup.stopAll()
	stop()
	if err != nil {
		if interrupted {
			fmt.Fprintln(os.Stderr, "shoalbench: interrupted; everything it started is stopped")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "shoalbench:", err)
		os.Exit(1)
	}
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "shoalbench: "+format+"\n", a...)
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// run starts the backends and the targets, runs the matrix or the soak, and
// writes the report. The caller stops what sup started.
func run(ctx context.Context, c config, sup *supervisor) error {
	started := time.Now()
	tl, err := ensureTools(ctx, logf)
	if err != nil {
		return err
	}
	if c.Soak {
		c.Targets = []string{nameShoal}
	}
	var shoalBin string
	if has(c.Targets, nameShoal) {
		if shoalBin, err = filepath.Abs(c.Shoal); err != nil {
			return err
		}
		if _, err := os.Stat(shoalBin); err != nil {
			return fmt.Errorf("shoal binary %s: %w; run `make build` first, or leave Shoal out with -targets %s,%s,%s", c.Shoal, err, nameNginx, nameHAProxy, nameDirect)
		}
	}
	m := describeMachine()
	dir, err := os.MkdirTemp("", "shoalbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	logf("starting %d backends", c.Backends)
	backends, err := startBackends(ctx, sup, c.Backends)
	if err != nil {
		return err
	}
	var targets []*target
	for _, name := range c.Targets {
		var t *target
		var err error
		switch name {
		case nameShoal:
			t, err = startShoal(ctx, sup, shoalBin, dir, backends, c.Workers)
		case nameNginx:
			t, err = startNginx(ctx, sup, tl.Nginx, dir, backends, c.Workers)
		case nameHAProxy:
			t, err = startHAProxy(ctx, sup, tl.HAProxy, dir, backends, c.Workers)
		case nameDirect:
			t = &target{Name: nameDirect, Addr: backends[0]}
			err = verifyTarget(ctx, t)
		}
		if err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		if name == nameShoal {
			t.Argv[0] = c.Shoal // as given, for the report
		}
		logf("%s serves on %s", name, t.Addr)
		targets = append(targets, t)
	}

	versions := [][2]string{{"go", runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}}
	shoalVersion := ""
	if shoalBin != "" {
		shoalVersion = versionOf(ctx, shoalBin, "version")
		versions = append(versions, [2]string{"Shoal (`bin/shoal version`)", shoalVersion})
	}
	if !c.Soak {
		versions = append(versions,
			[2]string{"NGINX", versionOf(ctx, tl.Nginx, "-v")},
			[2]string{"HAProxy", versionOf(ctx, tl.HAProxy, "-v")})
	}
	versions = append(versions, [2]string{"wrk", versionOf(ctx, tl.Wrk, "-v")})
	opts := runOpts{Threads: c.Threads, Duration: c.Duration}

	if c.Soak {
		opts.Duration = c.SoakDuration
		logf("soak: %s at %d connections against Shoal", c.SoakDuration, c.SoakConns)
		sr, err := runSoak(ctx, targets[0], c.SoakConns, opts, c.SoakInterval, logf)
		if err != nil {
			return err
		}
		sr.Started, sr.Command, sr.Warmup, sr.Version, sr.BackendsN, sr.Machine, sr.TmpDir = started, c.commandString, c.SoakWarmup, shoalVersion, len(backends), m, dir
		sr.ShoalCmd = commandLine(targets[0].Env, targets[0].Argv)
		sec := sr.section()
		fmt.Println(sec)
		return writeSoak(c.Out, sec)
	}

	cases := benchCases(c.Conns)
	total := time.Duration(len(cases)) * (time.Duration(len(targets)) * (c.Warmup + time.Duration(c.Rounds)*(c.Duration+time.Second)))
	logf("running %d cases × %d targets × %d rounds of %s; about %s", len(cases), len(targets), c.Rounds, c.Duration, total.Round(time.Second))
	res, err := runMatrix(ctx, targets, cases, c.Rounds, c.Warmup, opts, logf)
	if err != nil {
		return err
	}
	r := &report{
		Started: started, Command: c.commandString, Machine: m, Versions: versions,
		Rounds: c.Rounds, Duration: c.Duration, Warmup: c.Warmup, Threads: c.Threads, Workers: c.Workers,
		Backends: backends, Backend: commandLine(nil, []string{"shoalbench", "-serve-backend", "127.0.0.1:PORT"}),
		Targets: targets, Cases: cases, Res: res, TmpDir: dir, LoadEnd: describeMachine().LoadAvg,
	}
	fmt.Printf("\n%s\n", r.headline())
	old, _ := os.ReadFile(c.Out)
	_, soak := splitSoak(string(old))
	if err := writeFile(c.Out, r.document(soak)); err != nil {
		return err
	}
	logf("wrote %s", c.Out)
	return nil
}

// writeSoak puts the soak section at the end of the document at path,
// replacing an earlier one.
func writeSoak(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	doc, _ := splitSoak(string(old))
	if doc == "" {
		doc = "# Benchmarks\n\nRun `make bench` for the comparison with NGINX and HAProxy.\n\n"
	}
	if err := writeFile(path, strings.TrimRight(doc, "\n")+"\n\n"+section); err != nil {
		return err
	}
	logf("wrote the soak section of %s", path)
	return nil
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}
